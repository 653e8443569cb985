"""The model card (README.md inside the bundle), generated from the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.bundle import MODEL_CARD, Manifest

WEAKNESSES = """\
- Trained on software UI strings (menu items, dialog labels, tooltips, messages) of Debian
  packages; general prose, long sentences and domain jargon outside software translate poorly.
- Rare words are split into subwords and can come out as non-words or stay English (see the
  examples below).
- The search is constrained to emit every source placeholder, but a hypothesis that runs into
  the length limit can still miss one (see `placeholders kept`); validate placeholders
  downstream if a missing one would break your UI.
- Catalogs disagree on style (quotation marks, spacing, terminology); the model mixes what
  it saw (see the examples below). No formality or terminology control.
"""
# Only for models whose corpus has those slices.
WEAKER_DOMAINS = """\
- Single words out of context (the dictionary slice) and game vocabulary (cards, pieces,
  names) are weaker than UI strings: see their rows above.
"""
TOP_PACKAGES = 30
DOMAIN_NAMES = {"ui": "UI catalogs (model_export/packages/train.txt)",
                "games": "games and educational software (games.txt)",
                "dictionary": "FreeDict dictionary (head word → first translation, also "
                              "capitalized); for German Ding (one sense per English word)"}


def _row(name: str, m: dict[str, Any]) -> str:
    return (f"| {name} | {m['bleu']:.1f} | {m['chrf']:.1f} | "
            f"{100 * m['placeholders_kept']:.1f} % of {m['placeholder_sentences']} |")


def _scores(metrics: dict[str, Any]) -> list[str]:
    return [_row(k.replace("_", " "), v) for k, v in metrics.items()
            if isinstance(v, dict) and "bleu" in v]


def _data_lines(corpus: dict[str, Any]) -> list[str]:
    lines = [f"- Source: {corpus['source']}",
             f"- {corpus['raw']} catalog entries, {corpus['clean']} after cleaning (mnemonics "
             "stripped, untranslated/empty/over-long/credit entries dropped, deduplicated by "
             f"source across packages); split by source hash: {corpus['splits']}."]
    domains = corpus.get("domains", {})
    if len(domains) > 1:
        lines += ["", "Pairs per source (deduplicated by English text in this order: a UI "
                  "string keeps its UI translation):", "",
                  "| source | train | dev | test |", "|---|---|---|---|",
                  *[f"| {DOMAIN_NAMES.get(name, name)} | {c['train']:,} | {c['dev']:,} | "
                    f"{c['test']:,} |" for name, c in domains.items()]]
    packages = corpus.get("packages", {})
    if packages:
        top = sorted(packages.items(), key=lambda kv: -kv[1]["added"])[:TOP_PACKAGES]
        lines += ["", f"Pairs contributed per package (the {len(top)} largest of "
                  f"{len(packages)}; the full list is in the manifest):", "",
                  "| package | catalog entries | unique pairs added |", "|---|---|---|",
                  *[f"| {name} | {c['raw']} | {c['added']} |" for name, c in top]]
    heldout = corpus.get("heldout_packages", {})
    if heldout:
        lines += ["", "Held out of training and dev (out-of-domain test; only strings not "
                  "seen in any training package are kept): "
                  + ", ".join(f"{name} ({c['unseen']})" for name, c in heldout.items()) + "."]
    return lines


def write_card(out_dir: Path, manifest: Manifest) -> None:
    a, t, metrics = manifest.architecture, manifest.training, manifest.metrics
    corpus = t["corpus"]
    sizes = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    lines = [
        f"# Model card: {manifest.model_id}",
        "",
        f"{manifest.source_lang}→{manifest.target_lang} translation of software UI strings"
        + (" (and games' strings and dictionary words)" if len(corpus.get("domains", {})) > 1
           else "") + ": "
        f"a bidirectional GRU encoder and a GRU decoder with {a.attention} attention, "
        f"{a.num_parameters / 1e6:.1f}M parameters, exported to ONNX (opset {manifest.opset}).",
        "",
        "## Data",
        *_data_lines(corpus),
        "- Placeholders (`%s`, `%1`, `$(ARG1)`, `{name}`, `<b>`, newlines…) are masked as "
        "`<phN>` sentinels before tokenization and restored after decoding.",
        f"- Joint SentencePiece unigram vocabulary of {a.vocab_size} pieces, tied embeddings.",
        "",
        "## Model and training",
        f"- Embeddings {a.emb_dim}, encoder 2×{a.enc_hidden} (bi-GRU), decoder GRU "
        f"{a.dec_hidden}, attention {a.attention} ({a.attn_dim}).",
        *_training_lines(t),
        "",
        f"## Test results ({metrics['test_sentences']} sentences of every domain, sacrebleu)",
        "",
        "| decoding | BLEU | chrF | placeholders kept |",
        "|---|---|---|---|",
        *_scores(metrics),
        "",
    ]
    for name, domain in metrics.get("domains", {}).items():
        lines += [f"### {name} ({domain['sentences']} sentences)", "",
                  "| decoding | BLEU | chrF | placeholders kept |", "|---|---|---|---|",
                  *_scores(domain), ""]
    if "length_penalty" in manifest.decoding:
        lines += [f"Beam search uses the GNMT length penalty α = "
                  f"{manifest.decoding['length_penalty']}, chosen on the dev set; outputs keep "
                  "every source placeholder by constrained search (the unconstrained row shows "
                  "what that changes).", ""]
    if "int8_bleu_delta" in metrics:
        lines += [f"int8 (static, batch-invariant) quantization changes beam BLEU by "
                  f"{metrics['int8_bleu_delta']:+.2f}.", ""]
    if "provenance" in metrics:
        p = metrics["provenance"]
        lines += [f"Measured with onnxruntime {p['onnxruntime']} on {p['cpu']} "
                  f"({', '.join(p['isa'])}; {p['cpu_count']} cores).", ""]
    lines += _shortlist_lines(manifest)
    lines += _previous_lines(manifest)
    lines += _terminology_lines(manifest)
    lines += _ablation_lines(manifest)
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
              f"scored; `make model LANG={manifest.target_lang}` rebuilds them all.", "",
              "| file | bytes |", "|---|---|",
              *[f"| {n} | {s:,} |" for n, s in sizes.items() if n != MODEL_CARD], "",
              "## Known weaknesses", WEAKNESSES + (WEAKER_DOMAINS if {
                  "test-games", "test-dictionary"} & set(metrics.get("domains", {})) else ""),
              "## Examples (test and held-out sets, beam search, good and bad)", ""]
    lines += [f"- {e['source']!r} → {e['beam']!r} (reference {e['reference']!r})"
              for e in metrics.get("examples", [])]
    if "showcase" in metrics:
        lines += ["", "## What a new user tries first (no reference; judge for yourself)", ""]
        lines += [f"- {e['source']!r} → {e['beam']!r}" for e in metrics["showcase"]]
    (out_dir / MODEL_CARD).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _training_lines(t: dict[str, Any]) -> list[str]:
    run = (f"{t['epochs']} epochs ({t.get('steps', '?')} updates), "
           f"{t['train_seconds'] / 60:.0f} min on {t['threads']} CPU threads")
    parent = t.get("fine_tuned_from")
    extra = ", ".join(f"`{name}` ({times} more {'copy' if times == 1 else 'copies'})"
                      for name, times in t.get("oversample", {}).items())
    if not parent:
        added = f" with {extra} added (oversampled)" if extra else ""
        left_out = ", ".join(f"`{name}`" for name in t.get("exclude", []))
        if left_out:
            count = f"{t['excluded_pairs']:,} " if "excluded_pairs" in t else ""
            added += f", without the {count}pairs of {left_out} (`train --exclude`)"
        return [f"- {run}{added}; best dev BLEU (greedy) {t['best_dev_bleu']}."]
    return [f"- Trained on every package for {parent['epochs']} epochs ({parent['steps']} "
            f"updates, {parent['train_seconds'] / 60:.0f} min), then fine-tuned from that model "
            f"for {t.get('steps', '?')} updates ({t['train_seconds'] / 60:.0f} min, "
            f"{t['threads']} CPU threads) on the same data with "
            f"{extra or 'no pair'} added (oversampled), at a lower learning rate; "
            f"best dev BLEU (greedy) {t['best_dev_bleu']}."]


def _shortlist_lines(manifest: Manifest) -> list[str]:
    spec = manifest.shortlist
    if spec is None or not spec.quality:
        return []
    lines = ["## Vocabulary shortlist", "",
             f"`{spec.file}` lists the {spec.top} target pieces each source piece most likely "
             f"translates to ({spec.method}), plus the {spec.frequent} most frequent; a step "
             "scores only those of the running sentences, each sentence normalized over its "
             f"own. It is {'on' if spec.default else 'off'} by default (`SERVICE_SHORTLIST`"
             "=false scores the whole vocabulary). Served variant, beam search:", "",
             "| set | candidates per sentence | reference pieces covered | BLEU full → "
             "shortlist | chrF full → shortlist |", "|---|---|---|---|---|"]
    for name, q in spec.quality.items():
        full, short = q["full"], q["shortlist"]
        lines.append(f"| {name} ({q['sentences']}) | {q['candidates']:.0f} | "
                     f"{q['reference_coverage']:.1%} | {full['bleu']:.1f} → {short['bleu']:.1f}"
                     f" | {full['chrf']:.1f} → {short['chrf']:.1f} |")
    return [*lines, ""]


def _previous_lines(manifest: Manifest) -> list[str]:
    """The model this one replaced, scored as served on this model's sets."""
    previous = manifest.metrics.get("previous")
    if not previous:
        return []
    spec = manifest.shortlist
    now = {name: q["shortlist" if spec and spec.default else "full"]
           for name, q in (spec.quality or {}).items()} if spec else {}
    lines = [f"## Compared with the model it replaces ({previous['model_id']})", "",
             f"The previous bundle (trained on {previous['corpus']}: "
             f"{previous['train_pairs']:,} training pairs) scored as it was served "
             f"({previous['variant']}, beam {previous['beam_size']}, shortlist "
             f"{'on' if previous['shortlist'] else 'off'}) on this model's evaluation sets, "
             "beside this model as served:", "",
             "| set | previous BLEU | this BLEU | previous chrF | this chrF |",
             "|---|---|---|---|---|"]
    for name, old in previous["scores"].items():
        new = now.get(name)
        if new is None:
            continue
        lines.append(f"| {name} ({old['sentences']}) | {old['bleu']:.1f} | {new['bleu']:.1f} "
                     f"| {old['chrf']:.1f} | {new['chrf']:.1f} |")
    return [*lines, ""]


# How each terminology configuration is named in the card, and the settings that serve it
_GLOSSARY_ROWS = {
    "first-mask": ("model first, then masked (the default)", ""),
    "first-mask-wide": ("the same, masked at the request's beam",
                        "`SERVICE_GLOSSARY_FALLBACK_BEAM=0`"),
    "mask": ("masked terms", "`SERVICE_GLOSSARY_MODEL_FIRST=false`"),
    "first-constrain": ("model first, then constrained", "`SERVICE_GLOSSARY_METHOD=constrain`"),
    "constrain": ("constrained beam search", "`SERVICE_GLOSSARY_METHOD=constrain`, "
                  "`SERVICE_GLOSSARY_MODEL_FIRST=false`"),
}


def _terminology_lines(manifest: Manifest) -> list[str]:
    """Glossaries: term use and quality without one and with each configuration."""
    t = manifest.metrics.get("terminology")
    if not t:
        return []
    speed = t["speed_ratio_20_terms"]
    lines = ["## Glossaries", "",
             f"`python -m model_export terminology`: {t['strings']} strings of the held-out "
             "applications whose human translation uses one of those applications' own one- "
             f"and two-word catalog entries ({t['glossary_entries']} entries, each written as "
             "those catalogs write it inside a sentence), beam 4, each string given its own "
             "terms. Term use counts the occurrences whose output holds the target term "
             "(whole words, any case; the WMT 2021 terminology task's exact match); "
             "unchanged, the strings whose output is the one without a glossary; decoded "
             "again, the strings model first decoded a second time, terms enforced; alignment, "
             "the terms whose target words the attention aligns to the source term's words "
             "only; time, a 20-term glossary per string against none.", "",
             "| glossary | term use | unchanged | decoded again | chrF | BLEU | placeholders "
             "kept | alignment | time |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [("no glossary", "", t["without"], 1.0)] + [
        (f"{name} ({setting})" if setting else name, key, t["with"][key], speed[key])
        for key, (name, setting) in _GLOSSARY_ROWS.items() if key in t["with"]]
    for name, key, r, ratio in rows:
        aligned = f"{r['alignment_right']:.1%}" if r["alignment_right"] is not None else "–"
        unchanged = f"{r['unchanged']:.1%}" if "unchanged" in r else "–"
        again = (f"{r['decoded_again']:.1%}" if key.startswith("first-")
                 and "decoded_again" in r else "–")
        lines.append(f"| {name} | {r['term_use']:.1%} | {unchanged} | {again} | "
                     f"{r['chrf']:.1f} | {r['bleu']:.1f} | {r['placeholders_kept']:.1%} | "
                     f"{aligned} | {ratio:.2f}× |")
    fallback = f" (masked, at beam {t['fallback_beam']})" if t.get("fallback_beam") else ""
    lines += ["", "Masked, a term sits where the source had it but the words around it may "
              "not agree with it (the model does not see it); constrained, the model places "
              "the term's own pieces, but where it words the term differently (another form) "
              "the term comes a second time, often last. Model first, the best of the beam's "
              "own candidates that holds every term stands, and only the strings none of "
              f"whose candidates does are decoded again with the terms enforced{fallback}. "
              "Some of the strings, with their terms:", ""]
    for e in t.get("examples", []):
        terms = ", ".join(f"{s} → {g}" for s, g in e["terms"].items())
        served = f"; model first {e['first-mask']!r}" if "first-mask" in e else ""
        lines += [f"- {e['source']!r} ({terms}): no glossary {e['without']!r}; masked "
                  f"{e['mask']!r}; constrained {e['constrain']!r}{served}"]
    return [*lines, ""]


def _ablation_lines(manifest: Manifest) -> list[str]:
    """What each corpus source adds: this model against the same schedule without it."""
    ablations = manifest.metrics.get("ablations")
    if not ablations:
        return []
    lines = ["## What each source adds", "",
             "The same schedule trained again without one source's pairs "
             "(`make ablation WITHOUT=<source>`: `train --exclude`), both scored as served "
             "(beam 4) on this model's evaluation sets in one run:", ""]
    for source, a in ablations.items():
        lines += [f"### Without {source} ({a['excluded_pairs']:,} training pairs left out)", "",
                  "| set | BLEU with → without | chrF with → without | placeholders kept |",
                  "|---|---|---|---|"]
        for name, with_ in a["with"].items():
            without = a["without"][name]
            lines.append(f"| {name} ({with_['sentences']}) | {with_['bleu']:.1f} → "
                         f"{without['bleu']:.1f} | {with_['chrf']:.1f} → {without['chrf']:.1f} "
                         f"| {with_['placeholders_kept']:.1%} → "
                         f"{without['placeholders_kept']:.1%} |")
        lines.append("")
    return lines


def rewrite_card(out_dir: Path, manifest: Manifest) -> None:
    """The card of a bundle trained here or imported, whichever ``manifest`` is."""
    if "corpus" in manifest.training:
        write_card(out_dir, manifest)
    else:
        write_imported_card(out_dir, manifest)


def write_imported_card(out_dir: Path, manifest: Manifest) -> None:
    """The card of a bundle made from a model trained elsewhere (``model_export.adapter``)."""
    a, t, metrics, p = manifest.architecture, manifest.training, manifest.metrics, manifest.parity
    d = manifest.decoding_defaults
    sizes = {f.name: f.stat().st_size for f in sorted(out_dir.iterdir()) if f.is_file()}
    details = ", ".join(f"{k} {v}" for k, v in a.details.items())
    lines = [
        f"# Model card: {manifest.model_id}",
        "",
        f"{manifest.source_lang}→{manifest.target_lang} translation by a model imported into "
        f"an attn-translate bundle (from: {a.family}): {a.num_parameters / 1e6:.2f}M "
        f"parameters, exported to ONNX (opset {manifest.opset}).",
        "",
        "## Model",
        f"- {details or a.attention}.",
        f"- Tokenizer: {manifest.tokenizer.type} (`{manifest.tokenizer.source_model}`"
        + (f", target `{manifest.tokenizer.target_model}`"
           if manifest.tokenizer.target_model != manifest.tokenizer.source_model else "")
        + (f", ids from `{manifest.tokenizer.vocabulary}`" if manifest.tokenizer.vocabulary
           else "") + "); placeholders "
        + ("masked as `<phN>` sentinels." if manifest.placeholders else "not masked."),
        f"- Decoding defaults: {d.beam_rule} beam rule, length penalty α = {d.length_penalty},"
        f" at most int({d.max_length_ratio} × source tokens) + {d.max_length_extra} target "
        f"tokens (cap {manifest.max_target_tokens}).",
    ]
    if t:
        lines += ["", "## Origin", "", "```json", json.dumps(t, indent=1, sort_keys=True),
                  "```"]
    if metrics:
        lines += ["", f"## Evaluation ({metrics['test_sentences']} sentences, sacrebleu)", "",
                  "| decoding | BLEU | chrF | placeholders kept |", "|---|---|---|---|",
                  *_scores(metrics)]
    lines += ["", *_shortlist_lines(manifest), "## ONNX parity with PyTorch",
              f"- Max abs difference: log-probs {p['log_probs']}, attention {p['attention']}, "
              f"encoder {p['encoder']} (batch × length {p['shapes']})."]
    if "greedy_test_mismatches" in p:
        lines.append(f"- Served greedy outputs differing from PyTorch's: "
                     f"{p['greedy_test_mismatches']} of {p['greedy_test_sentences']}.")
    lines += ["", "## Files", "", "| file | bytes |", "|---|---|",
              *[f"| {n} | {s:,} |" for n, s in sizes.items() if n != MODEL_CARD]]
    (out_dir / MODEL_CARD).write_text("\n".join(lines) + "\n", encoding="utf-8")
