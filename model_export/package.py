"""Write a model bundle: ONNX export, parity, batch-invariant int8, evaluation, card, manifest."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from model_export.card import rewrite_card, write_card
from model_export.corpus import DEV_SENTENCES, Pair, load_split, sample
from model_export.export import OPSET, export_onnx, parity
from model_export.metrics import score
from model_export.quantize import NotBatchInvariant, calibration_feeds, quantize_static_int8
from model_export.step_module import StepModule
from model_export.tokenizer import BOS, EOS, PAD, UNK
from model_export.train import load_model
from service.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    TOKENIZER,
    VARIANT_FILES,
    Architecture,
    Manifest,
    SpecialTokens,
    TokenizerSpec,
    hash_files,
    verify_bundle,
)
from service.placeholders import find_placeholders
from service.translator import DecodeOptions, InputTooLong, Translator, translate_corpus

log = logging.getLogger(__name__)

# What a new user tries first: UI strings not taken from any test set (no references).
SHOWCASE = ("Open the file", "Save changes to the document before closing?",
            "Insert %1 rows above the selected cell", "Import Libraries", "<Not localized>",
            "The file could not be opened because it is in use by another program.",
            "Select the cells that contain the values you want to sort, then choose Sort on "
            "the Data menu.", "The macro could not be found in the library %s.",
            "Automatically check spelling while typing", "Export as PDF")
CALIBRATION_SENTENCES = 512  # training sentences whose activations fix the int8 scales
TERMINOLOGY_EXAMPLES = 6  # in a card: strings with the outputs of each glossary method
TEST_SENTENCES = 3000  # a stride sample of the test split (every domain in proportion)
# CPU features that change which int8/fp32 kernels onnxruntime runs (x86 and Arm names).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def provenance() -> dict[str, Any]:
    """Where recorded metrics and examples were computed: outputs of a quantized model can
    differ in near-ties between CPUs, thread counts and library builds."""
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    return {"onnxruntime": ort.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "cpu": cpu,
            "isa": [f for f in ISA_FLAGS if f in flags], "cpu_count": os.cpu_count(),
            "intra_op_threads": "onnxruntime default (one per core)"}


def fine_tuning(run_dir: Path) -> dict[str, Any]:
    """The oversampled (or excluded) slices, and the parent run if ``run_dir`` fine-tuned
    another run."""
    config = json.loads((run_dir / "config.json").read_text())
    if not config.get("init_from"):  # and an ablation's excluded slices
        out = {k: config[k] for k in ("oversample", "exclude") if config.get(k)}
        if config.get("exclude"):
            out["excluded_pairs"] = sum(len(load_split(Path(config["data_dir"]) / name))
                                        for name in config["exclude"])
        return out
    parent = Path(config["init_from"])
    summary = json.loads((parent / "summary.json").read_text())
    return {"fine_tuned_from": {"run": parent.name, "epochs": summary["epoch"],
                                "steps": summary["step"],
                                "train_seconds": round(summary["train_seconds"])},
            "oversample": config.get("oversample", {})}


def write_graphs(module: StepModule, out_dir: Path, manifest: Manifest,
                 write_tokenizer: Callable[[Path], TokenizerSpec],
                 calibration: Sequence[str] = ()) -> Manifest:
    """Every bundle's files, whoever trained the model: ``out_dir`` emptied, the fp32 graphs
    exported and compared with PyTorch (``parity``), the tokenizer written, and int8 graphs
    quantized on the ``calibration`` texts if any are given (a model whose int8 graphs would
    not be batch-invariant gets none, and its parity report says why). Returns the manifest,
    written with every file's hash."""
    module.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    enc, dec = (out_dir / f for f in VARIANT_FILES["fp32"])
    export_onnx(module, enc, dec)
    manifest = write_manifest(out_dir, replace(
        manifest, parity=parity(module, enc, dec), tokenizer=write_tokenizer(out_dir),
        variants={"fp32": dict(zip(("encoder", "decoder"), VARIANT_FILES["fp32"],
                                   strict=True))}))
    if not calibration:
        log.warning("no calibration sentences: the bundle has no int8 variant")
        return manifest
    try:
        _quantize(out_dir, manifest, calibration)
    except NotBatchInvariant as exc:
        for name in VARIANT_FILES["int8"]:
            (out_dir / name).unlink(missing_ok=True)
        log.warning("no int8 variant: %s", exc)
        return write_manifest(out_dir, replace(
            manifest, parity={**manifest.parity, "int8": f"not built: {exc}"}))
    return write_manifest(out_dir, replace(manifest, variants={
        v: dict(zip(("encoder", "decoder"), VARIANT_FILES[v], strict=True))
        for v in ("fp32", "int8")}))


def _quantize(out_dir: Path, manifest: Manifest, texts: Sequence[str]) -> None:
    """The int8 files from the fp32 ones, calibrated on ``texts`` tokenized as served."""
    translator = Translator(out_dir, "fp32")
    sources = []
    for text in texts:
        try:
            [row] = translator.prepare([text])
        except InputTooLong:  # the service refuses it too
            continue
        if row.ids:
            sources.append(row.ids)
    s = manifest.special_tokens
    feeds = calibration_feeds(translator.model, sources, s.bos, s.eos, s.pad)
    for fp32, int8, part in zip(VARIANT_FILES["fp32"], VARIANT_FILES["int8"], feeds,
                                strict=True):
        quantize_static_int8(out_dir / fp32, out_dir / int8, part)


def greedy_parity(module: StepModule, translator: Translator, sources: Sequence[str]
                  ) -> dict[str, int]:
    """Served (fp32, unconstrained) greedy ids vs PyTorch's, sentence by sentence, under
    the served length limits."""
    options = DecodeOptions(beam_size=1, keep_placeholders=False)
    rows = [r for r in translator.prepare(sources) if r.ids]
    served = translator.translate_running(rows, options)
    differ = 0
    for row, t in zip(rows, served, strict=True):
        limit = translator.search(row, options).max_len
        [reference] = module.greedy(torch.tensor([row.ids]), torch.tensor([len(row.ids)]),
                                    translator.special.eos, torch.tensor([limit]))
        differ += reference != t.best.token_ids
    log.info("served vs PyTorch greedy: %d of %d differ", differ, len(rows))
    return {"greedy_test_mismatches": differ, "greedy_test_sentences": len(rows)}


def tune_length_penalty(bundle: Path, dev: Sequence[Pair], beam_size: int,
                        grid: tuple[float, ...] = (0.0, 0.6, 1.0, 1.5, 2.0)) -> float:
    """The GNMT alpha with the best dev BLEU (beam search, fp32); the test set stays unseen."""
    translator = Translator(bundle, "fp32")
    sources, references = [s for s, _ in dev], [t for _, t in dev]
    bleu = {alpha: score(sources, translate_corpus(translator, sources, DecodeOptions(
        beam_size=beam_size, length_penalty=alpha)), references).bleu for alpha in grid}
    best = max(bleu, key=lambda a: bleu[a])
    log.info("length penalty on dev: %s -> %s", {a: round(b, 2) for a, b in bleu.items()}, best)
    return best


def write_manifest(out_dir: Path, manifest: Manifest) -> Manifest:
    manifest = replace(manifest, files=hash_files(out_dir))
    (out_dir / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def evaluate_set(translators: dict[str, Translator], pairs: Sequence[Pair], beam_size: int
                 ) -> dict[str, Any]:
    """Scores of every variant, greedy and beam, on ``pairs``."""
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    metrics: dict[str, Any] = {"sentences": len(pairs)}
    for variant, translator in translators.items():
        for name, beam in (("greedy", 1), (f"beam{beam_size}", beam_size)):
            hyps = translate_corpus(translator, sources, DecodeOptions(beam_size=beam))
            metrics[f"{variant}_{name}"] = score(sources, hyps, references).as_dict()
            log.info("%s %s: %s", variant, name, metrics[f"{variant}_{name}"])
    return metrics


def record_examples(translator: Translator, pairs: Sequence[Pair], beam_size: int
                    ) -> list[dict[str, Any]]:
    """Each pair translated alone, with the generated ids and scores: a later run on any
    machine can force-decode these ids and compare scores instead of strings."""
    examples = []
    for source, reference in pairs:
        example: dict[str, Any] = {"source": source, "reference": reference,
                                   "variant": translator.variant, "beam_size": beam_size,
                                   "shortlist": translator.shortlist is not None}
        for name, beam in (("greedy", 1), ("beam", beam_size)):
            best = translator.translate([source], DecodeOptions(beam_size=beam))[0].best
            example |= {name: best.text, f"{name}_tokens": best.token_ids,
                        f"{name}_score": round(best.score, 6)}
        examples.append(example)
    return examples


def evaluation_sets(data_dir: Path, eval_limit: int) -> dict[str, list[Pair]]:
    """``test`` (a stride sample) plus every slice the corpus step wrote (test-*, heldout)."""
    sets = {"test": sample(load_split(data_dir / "test.tsv"), eval_limit or TEST_SENTENCES)}
    for path in sorted(data_dir.glob("*.tsv")):
        if path.stem.startswith("test-") or path.stem == "heldout":
            pairs = load_split(path)
            sets[path.stem] = sample(pairs, eval_limit) if eval_limit else pairs
    return sets


def build_bundle(run_dir: Path, data_dir: Path, out_dir: Path, model_id: str,
                 source_lang: str, target_lang: str, int8: bool = True,
                 eval_limit: int = 0, beam_size: int = 4) -> Manifest:
    """Export the final checkpoint of ``run_dir`` into ``out_dir`` and evaluate it."""
    model, _ = load_model(run_dir)
    cfg = model.config
    summary = json.loads((run_dir / "summary.json").read_text())
    corpus = json.loads((data_dir / "corpus.json").read_text())
    manifest = Manifest(
        format_version=FORMAT_VERSION, model_id=model_id, source_lang=source_lang,
        target_lang=target_lang,
        architecture=Architecture(cfg.attention, cfg.vocab_size, cfg.emb_dim, cfg.enc_hidden,
                                  cfg.dec_hidden, cfg.attn_dim, model.num_parameters()),
        special_tokens=SpecialTokens(pad=PAD, unk=UNK, bos=BOS, eos=EOS),
        max_source_tokens=256, max_target_tokens=512, opset=OPSET,
        variants={}, files={},
        training={"corpus": corpus, "config": asdict(cfg), "epochs": summary["epoch"],
                  "steps": summary["step"], "train_seconds": round(summary["train_seconds"]),
                  "best_dev_bleu": round(summary["best_bleu"], 2),
                  "threads": torch.get_num_threads(), **fine_tuning(run_dir)},
    )

    def write_tokenizer(out: Path) -> TokenizerSpec:
        shutil.copy(run_dir / "spm.model", out / TOKENIZER)
        return TokenizerSpec()

    calibration = [s for s, _ in sample(load_split(data_dir / "train.tsv"),
                                        CALIBRATION_SENTENCES)] if int8 else []
    manifest = write_graphs(model, out_dir, manifest, write_tokenizer, calibration)
    int8 = "int8" in manifest.variants

    dev = sample(load_split(data_dir / "dev.tsv"), DEV_SENTENCES)
    alpha = tune_length_penalty(out_dir, dev, beam_size)
    manifest = write_manifest(out_dir, replace(manifest, decoding={"length_penalty": alpha}))
    # Created after the tuned length penalty is in the manifest, since they read it.
    translators = {variant: Translator(out_dir, variant) for variant in manifest.variants}
    sets = evaluation_sets(data_dir, eval_limit)
    test = sets.pop("test")
    metrics = evaluate_set(translators, test, beam_size)
    metrics["test_sentences"] = metrics.pop("sentences")
    sources = [s for s, _ in test]
    # What the placeholder constraint buys: the same search without it.
    hyps = translate_corpus(translators["fp32"], sources,
                            DecodeOptions(beam_size=beam_size, keep_placeholders=False))
    metrics[f"fp32_beam{beam_size}_unconstrained"] = score(
        sources, hyps, [t for _, t in test]).as_dict()
    # Parity of the exported graphs: PyTorch's greedy has no placeholder constraint.
    parity_report = {**manifest.parity, **greedy_parity(model, translators["fp32"], sources)}
    if int8:
        metrics["int8_bleu_delta"] = round(
            metrics[f"int8_beam{beam_size}"]["bleu"] - metrics[f"fp32_beam{beam_size}"]["bleu"], 2)
    metrics["domains"] = {name: evaluate_set(translators, pairs, beam_size)
                          for name, pairs in sets.items()}
    with_placeholder = [i for i, s in enumerate(sources) if find_placeholders(s)][:4]
    picked = [test[i] for i in sorted(set(range(6)) | set(with_placeholder))]
    for name, count in (("heldout", 6), ("test-games", 4), ("test-dictionary", 2)):
        pairs = sets.get(name, [])
        picked += pairs[:: max(1, len(pairs) // count)][:count]
    served = translators["int8" if int8 else "fp32"]
    metrics["examples"] = record_examples(served, picked, beam_size)
    metrics["showcase"] = [{"source": text, "beam": t.best.text} for text, t in zip(
        SHOWCASE, served.translate(list(SHOWCASE), DecodeOptions(beam_size=beam_size)),
        strict=True)]
    metrics["provenance"] = provenance()
    manifest = replace(manifest, metrics=metrics, parity=parity_report)
    write_card(out_dir, manifest)
    return write_manifest(out_dir, manifest)


def ship(bundle: Path, out_dir: Path, variants: Sequence[str]) -> Manifest:
    """Copy ``bundle`` into ``out_dir`` with only ``variants`` (a size budget); the manifest
    keeps the scores of every variant that was built, so the card can compare them."""
    manifest = verify_bundle(bundle)
    missing = [v for v in variants if v not in manifest.variants]
    if missing or not variants:
        raise ValueError(f"cannot ship {list(variants)}: {bundle} has "
                         f"{', '.join(sorted(manifest.variants))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    kept = {v: manifest.variants[v] for v in variants}
    shortlist = [manifest.shortlist.file] if manifest.shortlist else []
    for name in [TOKENIZER, *shortlist, *(f for files in kept.values() for f in files.values())]:
        shutil.copy(bundle / name, out_dir / name)
    manifest = replace(manifest, variants=kept)
    write_card(out_dir, manifest)
    return write_manifest(out_dir, manifest)


def record_terminology(bundle: Path, result: dict[str, Any]) -> Manifest:
    """Keep a terminology evaluation (:func:`model_export.terminology.evaluate`) in the
    bundle's manifest and card."""
    manifest = verify_bundle(bundle)
    kept = {k: v for k, v in result.items() if k not in ("bundle", "examples", "seconds")}
    kept["examples"] = result.get("examples", [])[:TERMINOLOGY_EXAMPLES]
    manifest = replace(manifest, metrics={**manifest.metrics, "terminology": kept})
    rewrite_card(bundle, manifest)
    return write_manifest(bundle, manifest)


def served_scores(translator: Translator, data_dir: Path, eval_limit: int = 0,
                  beam_size: int = 4) -> dict[str, dict[str, Any]]:
    """A bundle as the service runs it (its variant and shortlist), beam search, on every
    evaluation set of ``data_dir``."""
    scores = {}
    for name, pairs in evaluation_sets(data_dir, eval_limit).items():
        sources, references = [s for s, _ in pairs], [t for _, t in pairs]
        hyps = translate_corpus(translator, sources, DecodeOptions(beam_size=beam_size))
        scores[name] = score(sources, hyps, references).as_dict()
        log.info("%s on %s: %s", translator.bundle_dir, name, scores[name])
    return scores


def record_ablation(bundle: Path, ablation: Path, source: str, data_dir: Path,
                    eval_limit: int = 0, beam_size: int = 4) -> Manifest:
    """What one corpus source adds: ``bundle`` and ``ablation`` (the same schedule trained
    without ``source``'s pairs: ``train --exclude``) scored side by side as served on the
    bundle's evaluation sets, kept in the bundle's manifest and card."""
    manifest = verify_bundle(bundle)
    without = verify_bundle(ablation)
    ablations = {**manifest.metrics.get("ablations", {}), source: {
        "excluded": without.training.get("exclude", []), "beam_size": beam_size,
        "excluded_pairs": without.training.get("excluded_pairs", 0),  # counted at bundling
        "with": served_scores(Translator(bundle), data_dir, eval_limit, beam_size),
        "without": served_scores(Translator(ablation), data_dir, eval_limit, beam_size)}}
    manifest = replace(manifest, metrics={**manifest.metrics, "ablations": ablations})
    rewrite_card(bundle, manifest)
    return write_manifest(bundle, manifest)


def record_previous(bundle: Path, previous: Path, data_dir: Path, eval_limit: int = 0,
                    beam_size: int = 4) -> Manifest:
    """Score ``previous`` (the bundle this one replaces, as it is served) on this bundle's
    evaluation sets, and keep its scores beside this bundle's served ones (the shortlist's
    quality table, else the beam scores) in the manifest and the card."""
    manifest = verify_bundle(bundle)
    old = verify_bundle(previous)
    translator = Translator(previous)
    scores = served_scores(translator, data_dir, eval_limit, beam_size)
    training = old.training
    corpus = training.get("corpus", {})
    metrics = {**manifest.metrics, "previous": {
        "model_id": old.model_id, "variant": translator.variant,
        "shortlist": translator.shortlist is not None, "beam_size": beam_size,
        "corpus": corpus.get("source", ""), "train_pairs": corpus.get("splits", {}).get("train"),
        "sha256": old.files, "scores": scores}}
    manifest = replace(manifest, metrics=metrics)
    write_card(bundle, manifest)
    return write_manifest(bundle, manifest)
