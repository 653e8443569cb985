"""The model card (README.md inside the bundle), generated from the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.bundle import MODEL_CARD, Manifest

WEAKNESSES = """\
- Trained only on LibreOffice UI strings (~15.6k pairs): menu items, dialog labels, tooltips,
  error messages. General prose, long sentences and other software's terminology are out of
  domain and translate poorly.
- Rare words are split into subwords and can come out as non-words (see the examples below).
- Long sentences degrade: the model paraphrases frequent UI phrases ("Extras ▸ Optionen…")
  instead of translating (the last examples below).
- The search is constrained to emit every source placeholder, but a hypothesis that runs into
  the length limit can still miss one (see `placeholders kept`); validate placeholders
  downstream if a missing one would break your UI.
- int8 dynamic quantization computes activation scales per batch, so an int8 translation can
  differ slightly depending on the sentences it is batched with (fp32 does not).
- No formality or terminology control; LibreOffice's style (formal "Sie", »quotes«) is learned.
"""


def _row(name: str, m: dict[str, Any]) -> str:
    return (f"| {name} | {m['bleu']:.1f} | {m['chrf']:.1f} | "
            f"{100 * m['placeholders_kept']:.1f} % of {m['placeholder_sentences']} |")


def write_card(out_dir: Path, manifest: Manifest) -> None:
    a, t, metrics = manifest.architecture, manifest.training, manifest.metrics
    corpus = t["corpus"]
    sizes = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    rows = [_row(k.replace("_", " "), v) for k, v in metrics.items() if isinstance(v, dict)]
    lines = [
        f"# Model card: {manifest.model_id}",
        "",
        f"{manifest.source_lang}→{manifest.target_lang} translation of software UI strings: "
        f"a bidirectional GRU encoder and a GRU decoder with {a.attention} attention, "
        f"{a.num_parameters / 1e6:.1f}M parameters, exported to ONNX (opset {manifest.opset}).",
        "",
        "## Data",
        f"- Source: {corpus['source']}",
        f"- {corpus['raw']} catalog entries, {corpus['clean']} after cleaning (mnemonics "
        "stripped, untranslated/empty/over-long pairs dropped, deduplicated by source); "
        f"split by source hash: {corpus['splits']}.",
        "- Placeholders (`%s`, `%1`, `$(ARG1)`, `{name}`, `<b>`, newlines…) are masked as "
        "`<phN>` sentinels before tokenization and restored after decoding.",
        f"- Joint SentencePiece unigram vocabulary of {a.vocab_size} pieces, tied embeddings.",
        "",
        "## Model and training",
        f"- Embeddings {a.emb_dim}, encoder 2×{a.enc_hidden} (bi-GRU), decoder GRU "
        f"{a.dec_hidden}, attention {a.attention} ({a.attn_dim}).",
        f"- {t['epochs']} epochs, {t['train_seconds'] / 60:.0f} min on {t['threads']} CPU "
        f"threads; best dev BLEU (greedy) {t['best_dev_bleu']}.",
        "",
        f"## Test results ({metrics['test_sentences']} sentences, sacrebleu)",
        "",
        "| decoding | BLEU | chrF | placeholders kept |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    if "length_penalty" in manifest.decoding:
        lines += [f"Beam search uses the GNMT length penalty α = "
                  f"{manifest.decoding['length_penalty']}, chosen on the dev set; outputs keep "
                  "every source placeholder by constrained search (the unconstrained row shows "
                  "what that changes).", ""]
    if "int8_bleu_delta" in metrics:
        lines += [f"int8 dynamic quantization changes beam BLEU by "
                  f"{metrics['int8_bleu_delta']:+.2f}.", ""]
    p = manifest.parity
    lines += [
        "## ONNX parity with PyTorch",
        f"- Max abs difference: log-probs {p['log_probs']}, attention {p['attention']}, "
        f"encoder {p['encoder']} (batch × length {p['shapes']}).",
    ]
    if "greedy_test_mismatches" in p:
        lines.append(f"- Greedy outputs differing from PyTorch on test: "
                     f"{p['greedy_test_mismatches']} of {p['greedy_test_sentences']}.")
    shipped = ", ".join(sorted(manifest.variants))
    lines += ["", "## Files", "",
              f"Variants shipped: {shipped}. Every variant in the table above was built and "
              "scored; `make model` rebuilds them all.", "", "| file | bytes |", "|---|---|",
              *[f"| {n} | {s:,} |" for n, s in sizes.items() if n != MODEL_CARD], "",
              "## Known weaknesses", WEAKNESSES, "## Examples (test set, beam search)", ""]
    lines += [f"- {e['source']!r} → {e['beam']!r} (reference {e['reference']!r})"
              for e in metrics.get("examples", [])]
    (out_dir / MODEL_CARD).write_text("\n".join(lines) + "\n", encoding="utf-8")
