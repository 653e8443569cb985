"""Reading OpenNMT-py RNN checkpoints without the ``onmt`` package.

An OpenNMT-py 3.x checkpoint is a plain dict saved by ``torch.save``: ``model`` (the state
dict without the generator), ``generator`` (a Linear's ``weight``/``bias``), ``vocab``
(``src``/``tgt`` token lists, the index is the id) and ``opt`` (the training options, an
``argparse.Namespace``). :func:`read_checkpoint` loads one with torch alone, normalizes the
options the way OpenNMT-py does when it loads a model (``update_model_opts``), and refuses
anything the service cannot reproduce with one clear message naming the option.

A 2.x checkpoint has the same keys, but its vocabularies are pickled torchtext ``Field``
objects (``vocab["src"].fields[0][1].vocab.itos``), its sizes are called ``rnn_size`` and its
generator is a ``Sequential`` (``0.weight``). It is read as OpenNMT-py's own
``tools/convertv2_v3.py`` reads it: torchtext and onmt classes are unpickled into plain
stand-ins that keep their attributes, so neither package is needed.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from model_export.adapter import BundleSpec, bundle_module
from model_export.step_module import StepModule
from service.bundle import Architecture, DecodingDefaults, Manifest, SpecialTokens

SPECIALS = {"unk": "<unk>", "pad": "<blank>", "bos": "<s>", "eos": "</s>"}


class UnsupportedCheckpoint(ValueError):
    """The checkpoint uses an option the converter does not support."""


@dataclass(frozen=True)
class OnmtArchitecture:
    rnn_type: str  # GRU | LSTM
    bidirectional: bool  # encoder_type brnn
    enc_layers: int
    dec_layers: int
    hidden: int  # encoder output and decoder state size (both directions together)
    src_emb: int
    tgt_emb: int
    bridge: bool
    input_feed: bool
    attention: str  # dot | general | mlp
    shared_embeddings: bool  # source and target tables are one
    shared_generator: bool  # the output layer is the target embedding table


@dataclass(frozen=True)
class OnmtCheckpoint:
    architecture: OnmtArchitecture
    src_vocab: list[str]
    tgt_vocab: list[str]
    weights: dict[str, torch.Tensor]  # model and generator (as ``generator.*``)
    options: dict[str, Any]

    def special_id(self, side: str, name: str) -> int:
        vocab = self.src_vocab if side == "src" else self.tgt_vocab
        return vocab.index(SPECIALS[name])


class _Stub:
    """A torchtext or onmt object of a 2.x checkpoint: its pickled attributes, nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("torchtext", "onmt"):
            return type(name, (_Stub,), {"__module__": module})
        return super().find_class(module, name)


# What torch.load needs of a pickle module.
_LEGACY_PICKLE = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load,
                                       __name__="model_export.opennmt")


def _field_tokens(field: Any) -> list[str] | None:
    """The id -> token list of a 2.x ``TextMultiField`` (or bare ``Field``)."""
    try:
        base = field.fields[0][1] if hasattr(field, "fields") else field
        return [str(t) for t in base.vocab.itos]
    except (AttributeError, IndexError, TypeError):
        return None


def read_checkpoint(path: Path) -> OnmtCheckpoint:
    """Load and validate an OpenNMT-py 3.x (or 2.x) RNN checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False,
                                pickle_module=_LEGACY_PICKLE)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise UnsupportedCheckpoint(f"{path}: not a torch checkpoint ({exc})") from exc
    if not isinstance(checkpoint, dict) or not {"model", "vocab", "opt"} <= checkpoint.keys():
        raise UnsupportedCheckpoint(f"{path}: not an OpenNMT-py checkpoint (expected the keys "
                                    "model, generator, vocab, opt)")
    vocab, version = checkpoint["vocab"], 3
    if isinstance(vocab, dict) and not isinstance(vocab.get("src"), list):
        vocab, version = {side: _field_tokens(vocab.get(side)) for side in ("src", "tgt")}, 2
    if not isinstance(vocab, dict) or not all(isinstance(vocab.get(s), list)
                                              for s in ("src", "tgt")):
        raise UnsupportedCheckpoint(f"{path}: no source and target vocabularies (neither "
                                    "3.x token lists nor 2.x torchtext fields)")
    options = _normalized(vars(checkpoint["opt"]))
    options["opennmt_version"] = version
    architecture = _architecture(options)
    for side in ("src", "tgt"):
        missing = [t for t in SPECIALS.values() if t not in vocab[side]
                   and not (side == "src" and t in ("<s>", "</s>"))]
        if missing:
            raise UnsupportedCheckpoint(f"{path}: the {side} vocabulary lacks {missing}")
    generator = checkpoint.get("generator") or {}
    weights = {**checkpoint["model"],
               **{f"generator.{k.removeprefix('0.')}": v for k, v in generator.items()}}
    if "generator.weight" not in weights:
        raise UnsupportedCheckpoint(f"{path}: no generator weights")
    return OnmtCheckpoint(architecture, vocab["src"], vocab["tgt"], weights, options)


def _normalized(opt: Mapping[str, Any]) -> dict[str, Any]:
    """OpenNMT-py's ``update_model_opts``: the shorthand options win (2.x names renamed)."""
    opt = {**opt}
    for old, new in (("rnn_size", "hidden_size"), ("enc_rnn_size", "enc_hid_size"),
                     ("dec_rnn_size", "dec_hid_size")):
        if old in opt:
            opt.setdefault(new, opt.pop(old))
    if opt.get("word_vec_size", -1) > 0:
        opt["src_word_vec_size"] = opt["tgt_word_vec_size"] = opt["word_vec_size"]
    if opt.get("layers", -1) > 0:
        opt["enc_layers"] = opt["dec_layers"] = opt["layers"]
    if opt.get("hidden_size", -1) > 0:
        opt["enc_hid_size"] = opt["dec_hid_size"] = opt["hidden_size"]
    return opt


# option -> (the one supported value, what any other value means); absent or None: default
_MUST_BE = {
    "model_task": ("seq2seq", "only encoder-decoder models"),
    "decoder_type": ("rnn", "only RNN decoders (Transformer models: use CTranslate2)"),
    "copy_attn": (False, "copy attention"),
    "coverage_attn": (False, "coverage attention"),
    "context_gate": (None, "context gates"),
    "position_encoding": (False, "position encodings in RNN embeddings"),
    "global_attention_function": ("softmax", "sparsemax attention"),
    "n_src_feats": (0, "source word features"),
}


def _architecture(opt: dict[str, Any]) -> OnmtArchitecture:
    encoder = opt.get("encoder_type", "rnn")
    if encoder not in ("rnn", "brnn"):
        raise UnsupportedCheckpoint(f"encoder_type {encoder!r} is not supported: only rnn "
                                    "and brnn (Transformer and CNN models are not RNNs)")
    rnn = opt.get("rnn_type", "LSTM")
    if rnn not in ("GRU", "LSTM"):
        raise UnsupportedCheckpoint(f"rnn_type {rnn!r} is not supported: only GRU and LSTM")
    for option, (supported, what) in _MUST_BE.items():
        value = opt.get(option)
        if value is not None and value != supported:
            raise UnsupportedCheckpoint(f"{option} {value!r} is not supported ({what})")
    attention = opt.get("global_attention", "general")
    if attention not in ("dot", "general", "mlp"):
        raise UnsupportedCheckpoint(f"global_attention {attention!r} is not supported: only "
                                    "dot, general and mlp")
    if opt["enc_layers"] != opt["dec_layers"]:
        raise UnsupportedCheckpoint(f"enc_layers {opt['enc_layers']} != dec_layers "
                                    f"{opt['dec_layers']}: OpenNMT-py's own decoder cannot "
                                    "start from such an encoder state either")
    return OnmtArchitecture(
        rnn_type=rnn, bidirectional=encoder == "brnn", enc_layers=opt["enc_layers"],
        dec_layers=opt["dec_layers"], hidden=opt["enc_hid_size"],
        src_emb=opt["src_word_vec_size"], tgt_emb=opt["tgt_word_vec_size"],
        bridge=bool(opt.get("bridge", False)), input_feed=bool(opt.get("input_feed", 1)),
        attention=attention, shared_embeddings=bool(opt.get("share_embeddings", False)),
        shared_generator=bool(opt.get("share_decoder_embeddings", False)))


class OnmtModel(StepModule):
    """OpenNMT-py's RNN encoder-decoder rebuilt from a checkpoint, with the step contract
    of :mod:`model_export.adapter` (``encode``/``decode_step``).

    The decoder's recurrent state travels as one opaque vector per row: every layer's ``h``,
    then (LSTM) every layer's ``c``, then (input feed) the previous attentional output. The
    encoder runs on packed sequences as OpenNMT-py's does, so final states are taken at each
    sentence's own length; the ONNX RNN ops receive the lengths as ``sequence_lens``.
    """

    def __init__(self, checkpoint: OnmtCheckpoint) -> None:
        super().__init__()
        a, w = checkpoint.architecture, checkpoint.weights
        self.arch = a
        self.pad_id = checkpoint.special_id("src", "pad")
        self.bos_id = checkpoint.special_id("tgt", "bos")
        self.src_vocab_size = len(checkpoint.src_vocab)
        directions = 2 if a.bidirectional else 1
        rnn = getattr(nn, a.rnn_type)
        self.src_embed = nn.Embedding(len(checkpoint.src_vocab), a.src_emb)
        self.tgt_embed = nn.Embedding(len(checkpoint.tgt_vocab), a.tgt_emb)
        self.encoder = rnn(a.src_emb, a.hidden // directions, num_layers=a.enc_layers,
                           bidirectional=a.bidirectional, batch_first=True)
        states = 2 if a.rnn_type == "LSTM" else 1
        width = a.hidden // directions * a.enc_layers
        self.bridge = nn.ModuleList(nn.Linear(width, width) for _ in range(states if a.bridge
                                                                           else 0))
        cell = nn.LSTMCell if a.rnn_type == "LSTM" else nn.GRUCell
        first = a.tgt_emb + (a.hidden if a.input_feed else 0)
        self.cells = nn.ModuleList(cell(first if i == 0 else a.hidden, a.hidden)
                                   for i in range(a.dec_layers))
        H = a.hidden
        if a.attention == "general":
            self.linear_in = nn.Linear(H, H, bias=False)
        elif a.attention == "mlp":
            self.linear_context = nn.Linear(H, H, bias=False)
            self.linear_query = nn.Linear(H, H)
            self.v = nn.Linear(H, 1, bias=False)
        self.linear_out = nn.Linear(2 * H, H, bias=a.attention == "mlp")
        self.generator = nn.Linear(H, len(checkpoint.tgt_vocab))
        self._load(w)
        self.eval()

    def _load(self, w: Mapping[str, torch.Tensor]) -> None:
        a = self.arch
        state = {"src_embed.weight": w["encoder.embeddings.make_embedding.emb_luts.0.weight"],
                 "tgt_embed.weight": w["decoder.embeddings.make_embedding.emb_luts.0.weight"],
                 "linear_out.weight": w["decoder.attn.linear_out.weight"],
                 "generator.weight": w["generator.weight"],
                 "generator.bias": w["generator.bias"]}
        state |= {f"encoder.{k.removeprefix('encoder.rnn.')}": v for k, v in w.items()
                  if k.startswith("encoder.rnn.")}
        state |= {f"bridge.{k.removeprefix('encoder.bridge.')}": v for k, v in w.items()
                  if k.startswith("encoder.bridge.")}
        for i in range(a.dec_layers):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                # input feed: StackedGRU/LSTM cells; otherwise nn.GRU/LSTM's layer k
                key = (f"decoder.rnn.layers.{i}.{kind}" if a.input_feed
                       else f"decoder.rnn.{kind}_l{i}")
                state[f"cells.{i}.{kind}"] = w[key]
        for name in ("linear_in.weight", "linear_context.weight", "linear_query.weight",
                     "linear_query.bias", "v.weight", "linear_out.bias"):
            if f"decoder.attn.{name}" in w and hasattr(self, name.split(".")[0]):
                state[name] = w[f"decoder.attn.{name}"]
        self.load_state_dict(state, strict=True)

    @property
    def state_size(self) -> int:
        a = self.arch
        return a.hidden * (a.dec_layers * (2 if a.rnn_type == "LSTM" else 1) + a.input_feed)

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(encoder_outputs (B, S, H), decoder_init (B, state), keys (B, S, H))."""
        a = self.arch
        packed = nn.utils.rnn.pack_padded_sequence(self.src_embed(src_ids), src_lengths,
                                                   batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=src_ids.size(1))
        finals = list(final) if a.rnn_type == "LSTM" else [final]  # each (L*D, B, Hd)
        if a.bridge:
            finals = [self._bridge(cast(nn.Linear, linear), s)
                      for linear, s in zip(self.bridge, finals, strict=True)]
        if a.bidirectional:  # layer l starts from [fw_l; bw_l]
            finals = [torch.cat([s[0::2], s[1::2]], dim=2) for s in finals]
        B = src_ids.size(0)
        parts = [s.transpose(0, 1).reshape(B, -1) for s in finals]  # (B, L*H) each
        if a.input_feed:
            parts.append(out.new_zeros(B, a.hidden))
        return out, torch.cat(parts, dim=1), self._keys(out)

    def _bridge(self, linear: nn.Linear, states: torch.Tensor) -> torch.Tensor:
        """OpenNMT-py's bridge: rows of ``layers * Hd`` values (for brnn, each sentence's
        ``2 * layers`` state vectors cut into two such rows), a Linear and a ReLU."""
        batch_first = states.transpose(0, 1)  # (B, L*D, Hd)
        rows = batch_first.reshape(1, -1, linear.in_features)
        # A 3-D MatMul + Add: onnxruntime fused this quantized product into an integer kernel
        # (quantize.check_integer_products), the Gemm of nn.Linear or a 2-D MatMul here not.
        mapped = torch.relu(rows @ linear.weight.t() + linear.bias)
        return mapped.reshape(batch_first.shape).transpose(0, 1)

    def _keys(self, out: torch.Tensor) -> torch.Tensor:
        """What each step scores its query against: (W_in q)·s = q·(s W_in) for general,
        W_c s for mlp (the query's half is added per step)."""
        if self.arch.attention == "general":
            return out @ self.linear_in.weight
        if self.arch.attention == "mlp":
            return self.linear_context(out)
        return out

    def decode_step(self, prev_tokens: torch.Tensor, hidden: torch.Tensor,
                    encoder_outputs: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_probs (R, V), next state (R, state), attention (R, S))."""
        a, H, L = self.arch, self.arch.hidden, self.arch.dec_layers
        h = list(hidden[:, : L * H].split(H, dim=1))
        lstm = a.rnn_type == "LSTM"
        c = list(hidden[:, L * H : 2 * L * H].split(H, dim=1)) if lstm else []
        x = self.tgt_embed(prev_tokens)
        if a.input_feed:
            x = torch.cat([x, hidden[:, -H:]], dim=1)  # embedding first
        for i, cell in enumerate(self.cells):
            if lstm:
                h[i], c[i] = cell(x, (h[i], c[i]))
            else:
                h[i] = cell(x, h[i])
            x = h[i]
        if a.attention == "mlp":
            scores = self.v(torch.tanh(self.linear_query(x).unsqueeze(1) + keys)).squeeze(2)
        else:
            scores = (keys * x.unsqueeze(1)).sum(dim=2)
        weights = torch.softmax(scores.masked_fill(~src_mask, float("-inf")), dim=1)
        context = torch.bmm(weights.unsqueeze(1), encoder_outputs).squeeze(1)
        output = self.linear_out(torch.cat([context, x], dim=1))
        if a.attention != "mlp":
            output = torch.tanh(output)
        state = torch.cat([*h, *c, *([output] if a.input_feed else [])], dim=1)
        return torch.log_softmax(self.generator(output), dim=-1), state, weights


ATTENTION_NAMES = {"mlp": "bahdanau", "general": "luong-general", "dot": "luong-dot"}
# onmt_translate's defaults, by major version: 3.x: BeamSearch with length_penalty avg,
# alpha 1; max_length = int(min(250, src_len * 1.25 + 5)). 2.x: length_penalty none, a fixed
# max_length 100.
OPENNMT_DECODING = {
    3: (DecodingDefaults(length_penalty=1.0, beam_rule="opennmt", max_length_ratio=1.25,
                         max_length_extra=5), 250),
    2: (DecodingDefaults(length_penalty=0.0, beam_rule="opennmt", max_length_ratio=0.0,
                         max_length_extra=100), 100),
}


def import_opennmt(path: Path, tokenizer: Path, out_dir: Path, *,
                   target_tokenizer: Path | None = None, source_lang: str = "und",
                   target_lang: str = "und", model_id: str | None = None,
                   calibration: Sequence[str] = (),
                   evaluation: Sequence[tuple[str, str]] = (),
                   placeholders: bool = False) -> Manifest:
    """Write a bundle serving the OpenNMT-py checkpoint at ``path`` as onmt_translate
    would: its vocabularies after SentencePiece, its beam rule and length limit."""
    checkpoint = read_checkpoint(path)
    model = OnmtModel(checkpoint)
    a = checkpoint.architecture
    architecture = Architecture(
        attention=ATTENTION_NAMES[a.attention], vocab_size=len(checkpoint.tgt_vocab),
        emb_dim=a.tgt_emb, enc_hidden=a.hidden // (2 if a.bidirectional else 1),
        dec_hidden=a.hidden, attn_dim=a.hidden,
        num_parameters=sum(p.numel() for p in model.parameters()), family="opennmt-py",
        details={"encoder": ("b" if a.bidirectional else "") + f"rnn {a.rnn_type}",
                 "layers": a.enc_layers, "hidden": a.hidden, "embeddings": a.src_emb,
                 "bridge": a.bridge, "input_feed": a.input_feed,
                 "global_attention": a.attention, "state_size": model.state_size,
                 "src_vocab": len(checkpoint.src_vocab)})
    options = {k: v for k, v in checkpoint.options.items() if k in _CARD_OPTIONS}
    decoding, max_length = OPENNMT_DECODING[checkpoint.options["opennmt_version"]]
    spec = BundleSpec(
        model_id=model_id or f"{source_lang}-{target_lang}-opennmt-{path.stem}",
        source_lang=source_lang, target_lang=target_lang,
        special=SpecialTokens(pad=checkpoint.special_id("src", "pad"),
                              unk=checkpoint.special_id("src", "unk"),
                              bos=checkpoint.special_id("tgt", "bos"),
                              eos=checkpoint.special_id("tgt", "eos")),
        tokenizer=tokenizer, target_tokenizer=target_tokenizer,
        vocabulary=(checkpoint.src_vocab, checkpoint.tgt_vocab), source_eos=False,
        placeholders=placeholders,
        decoding=decoding, architecture=architecture,
        training={"imported_from": {"checkpoint": path.name, "opennmt_options": options}},
        max_target_tokens=max_length)
    return bundle_module(model, out_dir, spec, calibration, evaluation)


# The options a card shows (the checkpoint holds every training option).
_CARD_OPTIONS = ("opennmt_version", "encoder_type", "decoder_type", "rnn_type", "enc_layers",
                 "dec_layers", "enc_hid_size", "src_word_vec_size", "tgt_word_vec_size", "bridge",
                 "input_feed", "global_attention", "share_embeddings",
                 "share_decoder_embeddings", "share_vocab", "train_steps", "optim",
                 "learning_rate", "dropout", "seed")
