"""Reading OpenNMT-py RNN checkpoints without the ``onmt`` package.

An OpenNMT-py 3.x checkpoint is a plain dict saved by ``torch.save``: ``model`` (the state
dict without the generator), ``generator`` (a Linear's ``weight``/``bias``), ``vocab``
(``src``/``tgt`` token lists, the index is the id) and ``opt`` (the training options, an
``argparse.Namespace``). :func:`read_checkpoint` loads one with torch alone, normalizes the
options the way OpenNMT-py does when it loads a model (``update_model_opts``), and refuses
anything the service cannot reproduce with one clear message naming the option.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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


def read_checkpoint(path: Path) -> OnmtCheckpoint:
    """Load and validate an OpenNMT-py 3.x RNN checkpoint (2.x: convert it first with
    OpenNMT-py's ``tools/convertv2_v3.py``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or not {"model", "vocab", "opt"} <= checkpoint.keys():
        raise UnsupportedCheckpoint(f"{path}: not an OpenNMT-py checkpoint (expected the keys "
                                    "model, generator, vocab, opt)")
    vocab = checkpoint["vocab"]
    if not isinstance(vocab, dict) or not isinstance(vocab.get("src"), list):
        raise UnsupportedCheckpoint(f"{path}: the vocabulary is not a 3.x token list (an "
                                    "OpenNMT-py 2.x checkpoint? convert it with OpenNMT-py's "
                                    "tools/convertv2_v3.py)")
    options = _normalized(vars(checkpoint["opt"]))
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
    """OpenNMT-py's ``update_model_opts``: the shorthand options win."""
    opt = {**opt}
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
