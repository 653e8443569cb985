"""Bundle any :class:`~model_export.step_module.StepModule`: export, parity, int8, card.

    manifest = bundle_module(MyWrapper(model), Path("bundles/mine"), BundleSpec(
        model_id="en-fr-mine", source_lang="en", target_lang="fr",
        special=SpecialTokens(pad=0, unk=1, bos=2, eos=3),
        tokenizer=Path("spm.model")), calibration=texts, evaluation=pairs)

The fp32 graphs are checked against PyTorch on random batches (max abs difference of every
output) and, when evaluation pairs are given, the served greedy translations against the
module's own greedy decoding in PyTorch. int8 variants need calibration sentences.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from model_export.card import write_imported_card
from model_export.export import OPSET
from model_export.package import evaluate_set, greedy_parity, write_graphs, write_manifest
from model_export.step_module import StepModule
from service.bundle import (
    FORMAT_VERSION,
    TARGET_TOKENIZER,
    TOKENIZER,
    VOCABULARY,
    Architecture,
    DecodingDefaults,
    Manifest,
    SpecialTokens,
    TokenizerSpec,
)
from service.translator import Translator

log = logging.getLogger(__name__)

PARITY_SENTENCES = 200  # served vs PyTorch greedy translations compared at most
TOLERANCE = 1e-4  # max abs difference allowed by the contract checks (float reordering)


class ContractViolation(ValueError):
    """The module computes a row from other rows, or lets padding change real positions."""


@dataclass(frozen=True)
class BundleSpec:
    """What a bundle says about a module besides its weights."""

    model_id: str
    source_lang: str
    target_lang: str
    special: SpecialTokens  # pad: source padding; bos/eos: target; unk: source
    tokenizer: Path  # SentencePiece model of the source (and target) text
    target_tokenizer: Path | None = None  # if the target side has its own model
    # The module's own id -> piece lists (src, tgt), SentencePiece pieces looked up in them;
    # None: SentencePiece ids are the module's ids.
    vocabulary: tuple[list[str], list[str]] | None = None
    source_eos: bool = True  # the source ends with EOS
    placeholders: bool = False  # the model was trained on <phN> sentinels
    decoding: DecodingDefaults = field(default_factory=DecodingDefaults)
    architecture: Architecture | None = None  # None: sizes read from the module
    training: dict[str, Any] = field(default_factory=dict)  # provenance for the card
    max_source_tokens: int = 256
    max_target_tokens: int = 512


def bundle_module(module: StepModule, out_dir: Path, spec: BundleSpec,
                  calibration: Sequence[str] = (), evaluation: Sequence[tuple[str, str]] = (),
                  beam_size: int = 4) -> Manifest:
    """Write ``module`` as a bundle into ``out_dir``; int8 too if ``calibration`` texts are
    given; ``evaluation`` (source, reference) pairs are scored and compared with PyTorch."""
    check_contract(module)
    manifest = write_graphs(module, out_dir, Manifest(
        format_version=FORMAT_VERSION, model_id=spec.model_id, source_lang=spec.source_lang,
        target_lang=spec.target_lang,
        architecture=spec.architecture or _architecture(module),
        special_tokens=spec.special, max_source_tokens=spec.max_source_tokens,
        max_target_tokens=spec.max_target_tokens, opset=OPSET, variants={}, files={},
        training=spec.training, decoding=asdict(spec.decoding), placeholders=spec.placeholders),
        lambda out: _copy_tokenizer(spec, out), calibration)
    parity_report = dict(manifest.parity)
    metrics: dict[str, Any] = {}
    if evaluation:
        translators = {v: Translator(out_dir, v) for v in manifest.variants}
        metrics = evaluate_set(translators, evaluation, beam_size)
        metrics["test_sentences"] = metrics.pop("sentences")
        sources = [s for s, _ in evaluation][:PARITY_SENTENCES]
        parity_report |= greedy_parity(module, translators["fp32"], sources)
    manifest = replace(manifest, metrics=metrics, parity=parity_report)
    write_imported_card(out_dir, manifest)
    return write_manifest(out_dir, manifest)


@torch.inference_mode()
def check_contract(module: StepModule, lengths: Sequence[int] = (7, 3, 5)) -> None:
    """Raise :class:`ContractViolation` unless every sentence encodes and decodes the same
    alone (unpadded) as in a padded batch with others: what lets the service batch rows of
    different requests and sentences join a running batch."""
    g = torch.Generator().manual_seed(0)
    S = max(lengths)
    ids = torch.randint(4, module.src_vocab_size, (len(lengths), S), generator=g)
    length = torch.tensor(lengths)
    ids = ids.masked_fill(torch.arange(S)[None, :] >= length[:, None], module.pad_id)
    outputs, hidden, keys = module.encode(ids, length)
    mask = torch.arange(S)[None, :] < length[:, None]
    prev = torch.full((len(lengths),), module.bos_id, dtype=torch.long)
    batch = module.decode_step(prev, hidden, outputs, keys, mask)
    for i, n in enumerate(lengths):
        alone = module.encode(ids[i : i + 1, :n], length[i : i + 1])
        real = (outputs[i : i + 1, :n], hidden[i : i + 1], keys[i : i + 1, :n])
        worst = max(float((a - b).abs().max()) for a, b in zip(alone, real, strict=True))
        if worst > TOLERANCE:
            raise ContractViolation(
                f"encode: a sentence of {n} tokens differs by {worst:.3g} when padded to {S}: "
                "padding must not change real positions or the decoder's initial state "
                "(take final states at each sentence's length, as src_lengths gives it)")
        step = module.decode_step(prev[i : i + 1], alone[1], alone[0], alone[2],
                                  torch.ones(1, n, dtype=torch.bool))
        worst = max(float((a - b[i : i + 1, : a.shape[1]]).abs().max())
                    for a, b in zip(step, batch, strict=True))
        if worst > TOLERANCE:
            raise ContractViolation(
                f"decode_step: a row computed alone differs by {worst:.3g} from the same row "
                "in a batch: rows must not depend on other rows (no batch statistics) and "
                "attention must be 0 on padding")


def _architecture(module: StepModule) -> Architecture:
    with torch.no_grad():
        src = torch.full((1, 2), 4, dtype=torch.long)
        outputs, hidden, keys = module.encode(src, torch.tensor([2]))
        log_probs, _, _ = module.decode_step(torch.tensor([module.bos_id]), hidden, outputs,
                                             keys, torch.ones(1, 2, dtype=torch.bool))
    return Architecture(
        attention=type(module).__name__, vocab_size=log_probs.shape[-1], emb_dim=0,
        enc_hidden=outputs.shape[-1], dec_hidden=hidden.shape[-1], attn_dim=keys.shape[-1],
        num_parameters=sum(p.numel() for p in module.parameters()), family="custom")


def _copy_tokenizer(spec: BundleSpec, out_dir: Path) -> TokenizerSpec:
    shutil.copy(spec.tokenizer, out_dir / TOKENIZER)
    target = TOKENIZER
    if spec.target_tokenizer and spec.target_tokenizer.read_bytes() != spec.tokenizer.read_bytes():
        shutil.copy(spec.target_tokenizer, out_dir / TARGET_TOKENIZER)
        target = TARGET_TOKENIZER
    if spec.vocabulary is None:
        return TokenizerSpec("sentencepiece", TOKENIZER, target, None, spec.source_eos)
    src, tgt = spec.vocabulary
    (out_dir / VOCABULARY).write_text(json.dumps({"src": src, "tgt": tgt}, ensure_ascii=False),
                                      encoding="utf-8")
    return TokenizerSpec("sentencepiece+vocabulary", TOKENIZER, target, VOCABULARY,
                         spec.source_eos)
