"""End to end on a tiny synthetic corpus: train a few steps, bundle, load, translate."""

import json
from pathlib import Path

import pytest
import torch

from model_export.__main__ import main
from model_export.corpus import build
from service.bundle import verify_bundle
from service.translator import DecodeOptions, Translator

NOUNS = [("file", "Datei"), ("table", "Tabelle"), ("image", "Bild"), ("page", "Seite"),
         ("document", "Dokument"), ("chart", "Diagramm"), ("slide", "Folie"), ("cell", "Zelle")]
VERBS = [("Open", "öffnen"), ("Save", "speichern"), ("Delete", "löschen"), ("Insert", "einfügen"),
         ("Print", "drucken"), ("Copy", "kopieren")]


def synthetic_pairs() -> list[tuple[str, str]]:
    pairs = []
    for en_v, de_v in VERBS:
        for en_n, de_n in NOUNS:
            pairs.append((f"{en_v} {en_n}", f"{de_n} {de_v}"))
            pairs.append((f"{en_v} the {en_n} %1", f"{de_n} %1 {de_v}"))
            pairs.append((f"Could not {en_v.lower()} the {en_n} $(ARG1).",
                          f"{de_n} $(ARG1) konnte nicht {de_v} werden."))
    return pairs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("pipeline")
    data, run, out = work / "data", work / "run", work / "bundle"
    build(synthetic_pairs(), data, "synthetic")
    main(["train", "--data", str(data), "--run", str(run), "--vocab-size", "400",
          "--emb-dim", "16", "--enc-hidden", "16", "--dec-hidden", "24", "--attn-dim", "8",
          "--epochs", "2", "--max-steps", "4", "--batch-tokens", "200", "--dev-limit", "10"])
    main(["bundle", "--data", str(data), "--run", str(run), "--out", str(out)])
    return data, run, out


def test_training_writes_resumable_checkpoints(tiny_run: tuple[Path, Path, Path]) -> None:
    _, run, _ = tiny_run
    for name in ("spm.model", "best.pt", "checkpoint.pt", "config.json", "log.jsonl"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 4 and summary["history"][-1]["step"] == 4


def test_resuming_mid_epoch_continues_exactly(tmp_path: Path,
                                               tiny_run: tuple[Path, Path, Path]) -> None:
    data, _, _ = tiny_run
    args = ["--data", str(data), "--vocab-size", "400", "--emb-dim", "16", "--enc-hidden", "16",
            "--dec-hidden", "24", "--attn-dim", "8", "--batch-tokens", "200",
            "--dev-limit", "4", "--eval-every", "5"]
    main(["train", "--run", str(tmp_path / "straight"), "--max-steps", "13", *args])
    main(["train", "--run", str(tmp_path / "resumed"), "--max-steps", "5", *args])
    main(["train", "--run", str(tmp_path / "resumed"), "--max-steps", "13", *args])
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert straight["state"]["step"] == resumed["state"]["step"] == 13
    assert straight["state"]["epoch"] >= 1  # crossed an epoch boundary on the way
    for name, weight in straight["model"].items():
        assert torch.equal(weight, resumed["model"][name]), name


def test_bundle_is_complete_and_consistent(tiny_run: tuple[Path, Path, Path]) -> None:
    _, _, out = tiny_run
    manifest = verify_bundle(out)
    assert manifest.parity["log_probs"] < 1e-4 and manifest.parity["attention"] < 1e-4
    assert manifest.parity["greedy_test_mismatches"] == 0
    assert {"fp32_greedy", "fp32_beam4", "int8_beam4"} <= manifest.metrics.keys()
    assert "int8_bleu_delta" in manifest.metrics
    assert manifest.metrics["provenance"]["onnxruntime"]
    example = manifest.metrics["examples"][0]
    assert example["variant"] == "int8" and isinstance(example["greedy_tokens"], list)
    assert "Model card" in (out / "README.md").read_text()


def test_bundle_translates_with_both_variants(tiny_run: tuple[Path, Path, Path]) -> None:
    _, _, out = tiny_run
    for variant in ("fp32", "int8"):
        [result] = Translator(out, variant).translate(["Open file %1"], DecodeOptions(beam_size=2))
        assert isinstance(result.best.text, str)
        assert result.best.attention.shape[1] == len(result.source_ids)
