"""End to end on a tiny synthetic corpus: train a few steps, bundle, load, translate."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.__main__ import main
from model_export.corpus import build
from model_export.export import OPSET
from model_export.train import final_weights, load_model
from service.bundle import (
    DECODER_INPUTS_V1,
    DECODER_OUTPUTS_V1,
    MANIFEST,
    hash_files,
    verify_bundle,
)
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


def test_fine_tuning_starts_from_the_parent_and_oversamples(
        tmp_path: Path, tiny_run: tuple[Path, Path, Path]) -> None:
    data, parent, _ = tiny_run
    (data / "train-focus.tsv").write_text("Open file\tDatei öffnen\n")
    args = ["--data", str(data), "--vocab-size", "400", "--emb-dim", "16", "--enc-hidden", "16",
            "--dec-hidden", "24", "--attn-dim", "8", "--batch-tokens", "200", "--dev-limit", "4"]
    run = tmp_path / "tuned"
    main(["train", "--run", str(run), "--init-from", str(parent), "--oversample",
          "train-focus.tsv:50", "--max-steps", "1", "--lr", "1e-4", *args])
    assert (run / "spm.model").read_bytes() == (parent / "spm.model").read_bytes()
    start = torch.load(final_weights(parent), weights_only=False)["model"]
    tuned = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    moved = [n for n in start if not torch.equal(start[n], tuned[n])]
    assert moved  # one small step away from the parent
    assert all((start[n] - tuned[n]).abs().max() < 0.01 for n in start)
    config = json.loads((run / "config.json").read_text())
    assert config["oversample"] == {"train-focus.tsv": 50}
    with pytest.raises(SystemExit, match=r"FILE\.tsv:N"):
        main(["train", "--run", str(run), "--oversample", "train-focus.tsv", *args])


def test_an_ablation_trains_without_the_excluded_pairs(
        tmp_path: Path, tiny_run: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data, _, _ = tiny_run
    train = (data / "train.tsv").read_text(encoding="utf-8").splitlines()
    charts = [line for line in train if "chart" in line]
    (data / "train-charts.tsv").write_text("\n".join(charts) + "\n", encoding="utf-8")
    caplog.set_level("INFO", logger="model_export.train")
    main(["train", "--data", str(data), "--run", str(tmp_path / "ablation"), "--vocab-size",
          "400", "--emb-dim", "16", "--enc-hidden", "16", "--dec-hidden", "24", "--attn-dim",
          "8", "--max-steps", "1", "--batch-tokens", "200", "--dev-limit", "4",
          "--exclude", "train-charts.tsv"])
    assert 0 < len(charts) < len(train)
    assert f"--exclude train-charts.tsv: {len(charts)} training pairs left out" in caplog.text
    assert f"of {len(train) - len(charts)} pairs" in caplog.text
    config = json.loads((tmp_path / "ablation" / "config.json").read_text())
    assert config["exclude"] == ["train-charts.tsv"]


def test_a_terminology_evaluation_is_kept_in_the_manifest_and_the_card(
        tmp_path: Path, tiny_run: tuple[Path, Path, Path]) -> None:
    from model_export.package import record_terminology

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_run[2], bundle)

    def scores(term_use: float, chrf: float) -> dict[str, float | None]:
        return {"term_use": term_use, "chrf": chrf, "bleu": 20.0, "placeholders_kept": 1.0,
                "alignment_right": None}

    result = {"bundle": str(bundle), "glossary_entries": 9, "strings": 4, "fallback_beam": 2,
              "without": scores(0.5, 50.0), "seconds": {"none": [1.0]},
              "with": {"mask": scores(1.0, 49.0), "constrain": scores(0.75, 51.0),
                       "first-mask": {**scores(1.0, 52.0), "unchanged": 0.6, "decoded_again": 0.25},
                       "first-constrain": scores(1.0, 53.0),
                       "first-mask-wide": {**scores(1.0, 52.5), "decoded_again": 0.25}},
              "speed_ratio_20_terms": {"mask": 0.95, "constrain": 2.5, "first-mask": 1.2,
                                       "first-constrain": 1.5, "first-mask-wide": 1.3},
              "examples": [{"source": "Empty the trash", "reference": "Papierkorb leeren",
                            "terms": {"trash": "Papierkorb"}, "without": "Müll leeren",
                            "mask": "Papierkorb leeren", "constrain": "Papierkorb leeren",
                            "first-mask": "Papierkorb leeren!",
                            "first-constrain": "Papierkorb leeren"}]}
    manifest = record_terminology(bundle, result)
    assert verify_bundle(bundle) == manifest  # the card changed, and its hash with it
    assert manifest.metrics["terminology"]["with"]["constrain"]["chrf"] == 51.0
    assert manifest.metrics["terminology"]["examples"] == result["examples"]
    card = (bundle / "README.md").read_text()
    assert ("| model first, then masked (the default) | 100.0% | 60.0% | 25.0% | 52.0 | 20.0 "
            "| 100.0% | – | 1.20× |") in card
    assert ("| the same, masked at the request's beam (`SERVICE_GLOSSARY_FALLBACK_BEAM=0`) | "
            "100.0% | – | 25.0% | 52.5 | 20.0 | 100.0% | – | 1.30× |") in card
    assert "decoded again with the terms enforced (masked, at beam 2)" in card
    assert ("| masked terms (`SERVICE_GLOSSARY_MODEL_FIRST=false`) | 100.0% | – | – | 49.0 | "
            "20.0 | 100.0% | – | 0.95× |") in card
    assert "| constrained beam search (`SERVICE_GLOSSARY_METHOD=constrain`, " \
        "`SERVICE_GLOSSARY_MODEL_FIRST=false`) | 75.0% | – | – | 51.0 |" in card
    assert ("- 'Empty the trash' (trash → Papierkorb): no glossary 'Müll leeren'; masked "
            "'Papierkorb leeren'; constrained 'Papierkorb leeren'; model first "
            "'Papierkorb leeren!'") in card


def test_an_ablation_is_scored_beside_the_bundle_and_kept_in_its_card(
        tmp_path: Path, tiny_run: tuple[Path, Path, Path]) -> None:
    from model_export.package import record_ablation

    data, _, out = tiny_run
    bundle = tmp_path / "bundle"
    shutil.copytree(out, bundle)
    manifest = record_ablation(bundle, out, "charts", data, eval_limit=6)
    assert verify_bundle(bundle) == manifest
    entry = manifest.metrics["ablations"]["charts"]
    assert entry["with"] == entry["without"]  # the same model both sides: the same scores
    assert set(entry["with"]) >= {"test"} and entry["with"]["test"]["sentences"] == 6
    card = (bundle / "README.md").read_text()
    assert "### Without charts (0 training pairs left out)" in card
    test = entry["with"]["test"]
    assert (f"| test (6) | {test['bleu']:.1f} → {test['bleu']:.1f} | {test['chrf']:.1f} → "
            f"{test['chrf']:.1f} |") in card


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
        [result] = Translator(out, variant).translate(["Open file %1"], DecodeOptions(
            beam_size=2, attention=True))
        assert isinstance(result.best.text, str)
        assert result.best.attention is not None
        assert result.best.attention.shape[1] == len(result.source_ids)


class _StepV1(torch.nn.Module):
    """The format 1 decoder graph: rows carry their own encoder states, full log-probs out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev: torch.Tensor, hidden: torch.Tensor, outputs: torch.Tensor,
                keys: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.decode_step(prev, hidden, outputs, keys, mask)


def test_format_1_bundles_translate_as_format_2(tiny_run: tuple[Path, Path, Path],
                                                tmp_path: Path) -> None:
    """Bundles exported before the step graph gathered rows and took the top-k still load,
    and the service's numpy path for them gives what the graph gives."""
    _, run, out = tiny_run
    model, _ = load_model(run)
    old = tmp_path / "v1"
    old.mkdir()
    for name in ("encoder.onnx", "spm.model"):
        shutil.copy(out / name, old / name)
    with torch.no_grad():
        outputs, hidden, keys = model.encode(torch.tensor([[5, 6, 3]]), torch.tensor([3]))
    torch.onnx.export(
        _StepV1(model).eval(), (torch.tensor([2]), hidden, outputs, keys,
                                torch.ones(1, 3, dtype=torch.bool)),
        str(old / "decoder.onnx"), dynamo=False, input_names=list(DECODER_INPUTS_V1),
        output_names=list(DECODER_OUTPUTS_V1), opset_version=OPSET,
        dynamic_axes={n: {0: "rows", 1: "src_len"} if n in ("encoder_outputs",
                      "attention_keys", "src_mask") else {0: "rows"}
                      for n in (*DECODER_INPUTS_V1, *DECODER_OUTPUTS_V1)})
    manifest = json.loads((out / MANIFEST).read_text())
    manifest |= {"format_version": 1,
                 "variants": {"fp32": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}}}
    manifest["files"] = hash_files(old)
    (old / MANIFEST).write_text(json.dumps(manifest))
    texts = ["Open file %1", "Could not save the table $(ARG1).", "Print", ""]
    for beam, n_best in ((1, 1), (3, 2)):
        options = DecodeOptions(beam_size=beam, n_best=n_best, attention=True)
        new = Translator(out, "fp32").translate(texts, options)
        for a, b in zip(Translator(old, "fp32").translate(texts, options), new, strict=True):
            assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
            for x, y in zip(a.candidates, b.candidates, strict=True):
                assert x.score == pytest.approx(y.score, abs=1e-5)
                assert np.allclose(x.attention, y.attention, atol=1e-5)


def test_a_retrained_bundle_keeps_the_previous_models_scores(
        tiny_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, _, out = tiny_run
    new, old = tmp_path / "new", tmp_path / "old"
    shutil.copytree(out, new)
    shutil.copytree(out, old)
    main(["shortlist", "--bundle", str(new), "--data", str(data)])
    main(["compare", "--bundle", str(new), "--previous", str(old), "--data", str(data)])
    manifest = verify_bundle(new)
    previous = manifest.metrics["previous"]
    assert previous["model_id"] == verify_bundle(old).model_id and not previous["shortlist"]
    assert previous["sha256"] == verify_bundle(old).files
    assert manifest.shortlist is not None and set(previous["scores"]) == set(
        manifest.shortlist.quality)
    # the same model without a shortlist scores what the new one does with the whole vocabulary
    for name, scores in previous["scores"].items():
        assert scores["bleu"] == manifest.shortlist.quality[name]["full"]["bleu"]
    card = (new / "README.md").read_text()
    assert "## Compared with the model it replaces" in card
    assert "| test (" in card.split("## Compared with the model it replaces")[1]
