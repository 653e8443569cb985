"""Write a model bundle: ONNX export, parity, int8 quantization, evaluation, card, manifest."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from model_export.card import write_card
from model_export.corpus import load_split
from model_export.export import OPSET, export_onnx, parity
from model_export.metrics import score
from model_export.tokenizer import BOS, EOS, PAD, UNK
from model_export.train import load_model, translate_greedy
from service.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    TOKENIZER,
    VARIANT_FILES,
    Architecture,
    Manifest,
    SpecialTokens,
    hash_files,
)
from service.placeholders import find_placeholders
from service.translator import DecodeOptions, Translator, translate_corpus

log = logging.getLogger(__name__)


def quantize(src: Path, dst: Path) -> None:
    """int8 dynamic quantization of the weights (activations quantized at run time)."""
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)


def tune_length_penalty(bundle: Path, dev: list[tuple[str, str]], beam_size: int,
                        grid: tuple[float, ...] = (0.0, 0.6, 1.0, 1.5, 2.0)) -> float:
    """The GNMT alpha with the best dev BLEU (beam search, fp32); the test set stays unseen."""
    translator = Translator(bundle, "fp32")
    sources, references = [s for s, _ in dev], [t for _, t in dev]
    bleu = {alpha: score(sources, translate_corpus(translator, sources, DecodeOptions(
        beam_size=beam_size, length_penalty=alpha)), references).bleu for alpha in grid}
    best = max(bleu, key=lambda a: bleu[a])
    log.info("length penalty on dev: %s -> %s", {a: round(b, 2) for a, b in bleu.items()}, best)
    return best


def _write_manifest(out_dir: Path, manifest: Manifest) -> Manifest:
    manifest = Manifest(**{**manifest.__dict__, "files": hash_files(out_dir)})
    (out_dir / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def build_bundle(run_dir: Path, data_dir: Path, out_dir: Path, model_id: str,
                 source_lang: str, target_lang: str, int8: bool = True,
                 eval_limit: int = 0, beam_size: int = 4,
                 ship: tuple[str, ...] = ("fp32", "int8")) -> Manifest:
    """Export the best checkpoint of ``run_dir`` into ``out_dir`` and evaluate it on test.

    Every variant is evaluated; only those in ``ship`` stay in the bundle (a size budget).
    """
    model, sp = load_model(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    variants = {"fp32": VARIANT_FILES["fp32"]} | ({"int8": VARIANT_FILES["int8"]} if int8 else {})
    enc, dec = (out_dir / f for f in VARIANT_FILES["fp32"])
    export_onnx(model, enc, dec)
    parity_report = parity(model, enc, dec)
    if int8:
        for src, dst in zip(VARIANT_FILES["fp32"], VARIANT_FILES["int8"], strict=True):
            quantize(out_dir / src, out_dir / dst)
    shutil.copy(run_dir / "spm.model", out_dir / TOKENIZER)

    cfg = model.config
    summary = json.loads((run_dir / "summary.json").read_text())
    corpus = json.loads((data_dir / "corpus.json").read_text())
    manifest = _write_manifest(out_dir, Manifest(
        format_version=FORMAT_VERSION, model_id=model_id, source_lang=source_lang,
        target_lang=target_lang,
        architecture=Architecture(cfg.attention, cfg.vocab_size, cfg.emb_dim, cfg.enc_hidden,
                                  cfg.dec_hidden, cfg.attn_dim, model.num_parameters()),
        special_tokens=SpecialTokens(pad=PAD, unk=UNK, bos=BOS, eos=EOS),
        max_source_tokens=256, max_target_tokens=512, opset=OPSET,
        variants={name: {"encoder": e, "decoder": d} for name, (e, d) in variants.items()},
        files={},
        training={"corpus": corpus, "config": asdict(cfg), "epochs": summary["epoch"],
                  "train_seconds": round(summary["train_seconds"]),
                  "best_dev_bleu": round(summary["best_bleu"], 2),
                  "threads": torch.get_num_threads()},
        parity=parity_report,
    ))

    alpha = tune_length_penalty(out_dir, load_split(data_dir / "dev.tsv"), beam_size)
    manifest = _write_manifest(out_dir, Manifest(**{**manifest.__dict__,
                                                    "decoding": {"length_penalty": alpha}}))
    test = load_split(data_dir / "test.tsv")
    if eval_limit:
        test = test[:eval_limit]
    sources, references = [s for s, _ in test], [t for _, t in test]
    metrics: dict[str, Any] = {"test_sentences": len(test)}
    outputs: dict[str, list[str]] = {}
    # Created after the tuned length penalty is in the manifest, since they read it.
    translators = {variant: Translator(out_dir, variant) for variant in variants}
    for variant, translator in translators.items():
        for name, beam in (("greedy", 1), (f"beam{beam_size}", beam_size)):
            hyps = translate_corpus(translator, sources, DecodeOptions(beam_size=beam))
            metrics[f"{variant}_{name}"] = score(sources, hyps, references).as_dict()
            log.info("%s %s: %s", variant, name, metrics[f"{variant}_{name}"])
            outputs[f"{variant}_{name}"] = hyps
    # What the placeholder constraint buys: the same search without it.
    hyps = translate_corpus(translators["fp32"], sources,
                            DecodeOptions(beam_size=beam_size, keep_placeholders=False))
    metrics[f"fp32_beam{beam_size}_unconstrained"] = score(sources, hyps, references).as_dict()
    # Parity of the exported graphs: PyTorch's greedy has no placeholder constraint.
    unconstrained = translate_corpus(translators["fp32"], sources,
                                     DecodeOptions(beam_size=1, keep_placeholders=False))
    torch_greedy = translate_greedy(model, sp, sources)
    mismatches = sum(a != b for a, b in zip(unconstrained, torch_greedy, strict=True))
    parity_report = {**parity_report, "greedy_test_mismatches": mismatches,
                     "greedy_test_sentences": len(sources)}
    log.info("ONNX vs PyTorch greedy on test: %d of %d differ", mismatches, len(sources))
    if int8:
        metrics["int8_bleu_delta"] = round(
            metrics[f"int8_beam{beam_size}"]["bleu"] - metrics[f"fp32_beam{beam_size}"]["bleu"], 2)
    # Test sentences with their offline outputs: the service must reproduce them exactly.
    with_placeholder = [i for i, s in enumerate(sources) if find_placeholders(s)][:4]
    picked = sorted(set(range(6)) | set(with_placeholder))
    # Each alone (batch of one): int8 activation scales are computed per batch, so an int8
    # output can depend on its batch mates; a lone request to the service is a batch of one.
    served = next(v for v in ("fp32", "int8", *variants) if v in ship and v in variants)

    def alone(text: str, beam: int) -> str:
        return translators[served].translate([text], DecodeOptions(beam_size=beam))[0].best.text

    metrics["examples"] = [
        {"source": sources[i], "reference": references[i], "variant": served,
         "greedy": alone(sources[i], 1), "beam": alone(sources[i], beam_size),
         "beam_size": beam_size} for i in picked]
    manifest = Manifest(**{**manifest.__dict__, "metrics": metrics, "parity": parity_report})
    kept = {name: files for name, files in manifest.variants.items() if name in ship}
    if not kept:
        raise ValueError(f"ship {ship} names none of the built variants {list(variants)}")
    for name in manifest.variants.keys() - kept.keys():
        for file in manifest.variants[name].values():
            (out_dir / file).unlink()
    manifest = Manifest(**{**manifest.__dict__, "variants": kept})
    write_card(out_dir, manifest)
    return _write_manifest(out_dir, manifest)
