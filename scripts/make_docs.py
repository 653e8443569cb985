"""Regenerate what README.md shows of the current models instead of typing it by hand:
the shipped models' table (from each bundle's manifest), the quick-start answer (from a real
server) and docs/playground.png (the playground in a real browser). `make docs` runs it;
tests/integration/test_readme.py checks that README.md still says what this would write.

    python scripts/make_docs.py [--no-screenshot]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's server and browser helpers, reused
from tests.integration.conftest import CHROMIUM, CHROMIUM_ARGS, start_server  # noqa: E402

README = ROOT / "README.md"
MODELS = ROOT / "models"
SCREENSHOT = ROOT / "docs" / "playground.png"
# The request README's quick start shows.
QUICKSTART = {"text": "Could not save the file %s.", "beam_size": 4}
SCREENSHOT_TEXT = "Could not open the file %s: permission denied."


def bundles() -> list[tuple[Path, dict[str, Any]]]:
    """The shipped bundles (``models/*/manifest.json``), default model first."""
    found = [(p.parent, json.loads(p.read_text("utf-8")))
             for p in sorted(MODELS.glob("*/manifest.json"))]
    return sorted(found, key=lambda b: (b[0].name != "en-de", b[0].name))


def _score(metrics: dict[str, Any], variant: str, decoding: str) -> dict[str, Any]:
    return dict(metrics[f"{variant}_{decoding}"])


def models_table() -> str:
    """One row per shipped bundle: languages, data, training, size and test scores of the
    variant it ships (beam 4 and greedy, sacrebleu), as recorded in its manifest."""
    rows = ["| model | data (pairs: train / test) | training | shipped | test BLEU beam / "
            "greedy | test chrF beam | held-out applications BLEU / chrF | games' strings BLEU "
            "/ chrF | placeholders kept |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path, manifest in bundles():
        training, metrics = manifest["training"], manifest["metrics"]
        variant = "int8" if "int8" in manifest["variants"] else "fp32"
        beam, greedy = _score(metrics, variant, "beam4"), _score(metrics, variant, "greedy")
        corpus = training["corpus"]
        minutes = training["train_seconds"] / 60
        if "fine_tuned_from" in training:
            minutes += training["fine_tuned_from"]["train_seconds"] / 60
        domains = metrics.get("domains", {})
        heldout = domains.get("heldout", {}).get(f"{variant}_beam4")
        games = domains.get("test-games", {}).get(f"{variant}_beam4")
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
        rows.append(
            f"| [`{path.name}`](models/{path.name}/README.md) "
            f"{manifest['source_lang']}→{manifest['target_lang']} "
            f"| {corpus['splits']['train'] - training.get('excluded_pairs', 0):,} / "
            f"{corpus['splits']['test']:,} "
            f"| {_steps(training)} updates, {minutes:.0f} min on {training['threads']} CPU "
            f"threads | {variant}, {size:.0f} MB "
            f"| {beam['bleu']:.1f} / {greedy['bleu']:.1f} | {beam['chrf']:.1f} "
            f"| {_pair(heldout)} | {_pair(games)} | {beam['placeholders_kept']:.1%} of "
            f"{beam['placeholder_sentences']} |")
    return "\n".join(rows)


def shortlist_sentence() -> str:
    """What serving with the shortlist changes on the models table's sets, from each
    manifest's shortlist quality table: the largest BLEU and chrF moves."""
    moves: dict[str, tuple[float, str]] = {}
    for path, manifest in bundles():
        quality = (manifest.get("shortlist") or {}).get("quality") or {}
        for name, q in quality.items():
            for metric in ("bleu", "chrf"):
                delta = q["shortlist"][metric] - q["full"][metric]
                if abs(delta) > abs(moves.get(metric, (0.0, ""))[0]):
                    moves[metric] = (delta, f"{path.name} {name}")
    if not moves:
        return "No shipped model has a shortlist."
    bleu, chrf = moves.get("bleu", (0.0, "none")), moves.get("chrf", (0.0, "none"))
    return (f"Served with the shortlist (the default), beam-search BLEU and chrF on each "
            f"model's evaluation sets move by at most {abs(bleu[0]):.2f} BLEU ({bleu[1]}, "
            f"{bleu[0]:+.2f}) and {abs(chrf[0]):.2f} chrF ({chrf[1]}, {chrf[0]:+.2f}).")


def _steps(training: dict[str, Any]) -> str:
    if "fine_tuned_from" in training:
        return f"{training['fine_tuned_from']['steps']:,} + {training['steps']:,}"
    return f"{training['steps']:,}"


def _pair(scores: dict[str, Any] | None) -> str:
    return f"{scores['bleu']:.1f} / {scores['chrf']:.1f}" if scores else "—"


def quickstart_block(answer: dict[str, Any]) -> str:
    """The quick start's JSON as README shows it: the translation and score, timings rounded."""
    timing = {k: round(v, 2) if isinstance(v, float) else v for k, v in answer["timing"].items()}
    translations = [{"text": t["text"], "score": round(t["score"], 4)}
                    for t in answer["translations"]]

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    return (f'```json\n{{"model": {dump(answer["model"])}, "model_version": '
            f'{dump(answer["model_version"])},\n "translations": '
            f'{dump(translations)},\n "timing": {dump(timing)}}}\n```')


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with what lies between ``<!-- name -->`` and ``<!-- /name -->`` replaced."""
    pattern = re.compile(rf"(<!-- {name} -->\n).*?(\n<!-- /{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> block")
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), text)


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", text, re.S)
    if not match:
        raise ValueError(f"README.md has no <!-- {name} --> block")
    return match.group(1)


def screenshot(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url + "/")
        page.wait_for_selector("#model[data-state=ready]")
        page.fill("#text", SCREENSHOT_TEXT)
        page.click("#submit")
        page.wait_for_selector("#app[data-state=done]")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args()
    text = replace_block(README.read_text("utf-8"), "models", models_table())
    text = replace_block(text, "shortlist", shortlist_sentence())
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))  # the default settings, as `make serve` runs it
        try:
            server.wait("/health/ready", 200, timeout=120)
            answer = httpx.post(server.url + "/translate", json=QUICKSTART, timeout=60).json()
            text = replace_block(text, "quickstart", quickstart_block(answer))
            if not args.no_screenshot:
                screenshot(server.url)
        finally:
            server.stop()
    README.write_text(text, "utf-8")
    print(f"README.md: models table and quick start regenerated; "
          f"{'' if args.no_screenshot else 'docs/playground.png written'}")


if __name__ == "__main__":
    main()
