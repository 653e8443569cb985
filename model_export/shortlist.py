"""Lexical shortlist: the target pieces each source piece may translate to.

Built at export from the tokenized training pairs, as Marian's lexical shortlists are built
from a word-alignment lexicon: IBM Model 1 (Brown et al., 1993), trained by EM with a NULL
source word, gives t(target | source) for every piece pair seen together; each source piece
keeps its ``top`` most probable target pieces. A sentence's candidates are then the union of
its source pieces' lists and the ``frequent`` most frequent target pieces (plus what must
always be reachable: EOS and the placeholder sentinels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model_export.card import rewrite_card
from model_export.corpus import Pair, load_split, sample
from model_export.metrics import score
from model_export.package import record_examples, write_manifest
from service.bundle import FORMAT_VERSION, SHORTLIST, Manifest, ShortlistSpec, verify_bundle
from service.placeholders import mask
from service.shortlist import Shortlist
from service.translator import DecodeOptions, Translator, translate_corpus

log = logging.getLogger(__name__)



def ibm1(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], vocab_size: int,
         iterations: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IBM Model 1 translation probabilities of the (source, target) piece pairs seen together.

    Vectorized EM over every (source position, target position) pair of every sentence; the
    source side gets a NULL word (id ``vocab_size``) that absorbs function pieces.

    :return: (source ids, target ids, t(target | source)) of the observed pairs
    """
    null = vocab_size
    src_of, tgt_of, occurrence = [], [], []  # one entry per (source token, target token)
    at = 0
    for source, target in pairs:
        if not target:
            continue
        s = np.append(np.asarray(source, dtype=np.int64), null)
        t = np.asarray(target, dtype=np.int64)
        src_of.append(np.tile(s, len(t)))
        tgt_of.append(np.repeat(t, len(s)))
        occurrence.append(np.repeat(np.arange(at, at + len(t)), len(s)))
        at += len(t)
    src = np.concatenate(src_of)
    tgt = np.concatenate(tgt_of)
    occ = np.concatenate(occurrence)
    keys, key_of = np.unique(src * (vocab_size + 1) + tgt, return_inverse=True)
    key_src, key_tgt = keys // (vocab_size + 1), keys % (vocab_size + 1)
    prob = np.ones(len(keys))  # uniform start: t(f | e) equal for every f seen with e
    prob /= np.bincount(key_src, prob, minlength=vocab_size + 1)[key_src]
    for iteration in range(iterations):
        p = prob[key_of]
        posterior = p / np.bincount(occ, p, minlength=at)[occ]  # over each target token's sources
        counts = np.bincount(key_of, posterior, minlength=len(keys))
        prob = counts / np.bincount(key_src, counts, minlength=vocab_size + 1)[key_src]
        log.info("IBM model 1 iteration %d: %d piece pairs", iteration + 1, len(keys))
    real = key_src < null
    return key_src[real], key_tgt[real], prob[real]


def build_shortlist(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], vocab_size: int,
                    always: Sequence[int], top: int = 50, frequent: int = 500,
                    iterations: int = 5) -> Shortlist:
    """Each source piece's ``top`` target pieces by IBM Model 1 probability; the ``frequent``
    most frequent target pieces and ``always`` (EOS, sentinels) for every sentence."""
    src, tgt, prob = ibm1(pairs, vocab_size, iterations)
    order = np.lexsort((-prob, src))  # by source, most probable first
    src, tgt = src[order], tgt[order]
    first = np.searchsorted(src, src, side="left")  # start of each source's run
    rank = np.arange(len(src)) - first
    keep = rank < top
    candidates = np.full((vocab_size, top), -1, dtype=np.int32)
    candidates[src[keep], rank[keep]] = tgt[keep]
    counts = np.bincount(np.concatenate([np.asarray(t, dtype=np.int64) for _, t in pairs]),
                         minlength=vocab_size)
    common = np.argsort(-counts, kind="stable")[:frequent]
    common = common[counts[common] > 0]
    fixed = np.union1d(common, np.asarray(always, dtype=np.int64)).astype(np.int32)
    return Shortlist(candidates, fixed)


def coverage(candidates: Callable[[Sequence[int]], np.ndarray],
             pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[float, float]:
    """(share of reference target tokens among their sentence's ``candidates``, mean number
    of candidates per sentence): what a shortlist loses, and what it saves."""
    covered = total = size = 0
    for source, target in pairs:
        allowed = candidates(source)
        covered += int(np.isin(np.asarray(target), allowed).sum())
        total += len(target)
        size += len(allowed)
    return covered / max(total, 1), size / max(len(pairs), 1)


def add_shortlist(bundle: Path, data_dir: Path, sets: dict[str, list[Pair]], top: int = 100,
                  frequent: int = 500, train_pairs: int = 0, beam_size: int = 4) -> Manifest:
    """Build the bundle's shortlist from ``data_dir/train.tsv`` (tokenized as the service
    tokenizes: placeholders masked; ``train_pairs``: a sample of that many, 0 = all), add it
    (on by default) and record what it costs: BLEU and chrF of the served variant with and
    without it, and the reference pieces it covers, on each evaluation set.

    Defaults measured on en-fr (reference pieces covered, test / games / dictionary slices):
    150k sampled pairs, top 50: 96.7 / 91.8 / 68.1 %; every pair (470k), top 50:
    97.8 / 96.5 / 77.7 %; every pair, top 100: 98.5 / 97.5 / 84.0 % with 730 candidates per
    sentence (of 10,000): the small domains need their own pairs' counts."""
    manifest = verify_bundle(bundle)
    full = Translator(bundle, shortlist=False)
    tokenizer, masked = full.tokenizer, manifest.placeholders

    def ids(source: str, target: str) -> tuple[list[int], list[int]]:
        if masked:
            source, target = mask(source).text, mask(target).text
        return tokenizer.encode(source), tokenizer.target_ids(target)

    train = [ids(*pair) for pair in sample(load_split(data_dir / "train.tsv"), train_pairs)]
    always = [full.special.eos, *full.sentinel_ids.tolist()]
    table = build_shortlist(train, manifest.architecture.vocab_size, always, top, frequent)
    table.save(bundle / SHORTLIST)
    spec = ShortlistSpec(top=top, frequent=frequent)
    manifest = _write(bundle, replace(manifest, shortlist=spec))

    restricted = Translator(bundle, shortlist=True)
    quality: dict[str, Any] = {}
    options = DecodeOptions(beam_size=beam_size)
    for name, held in sets.items():
        sources, references = [s for s, _ in held], [t for _, t in held]
        covered, size = coverage(restricted.candidates_of, [ids(*pair) for pair in held])
        quality[name] = {
            "sentences": len(held), "candidates": round(size, 1),
            "reference_coverage": round(covered, 4),
            **{how: score(sources, translate_corpus(t, sources, options), references).as_dict()
               for how, t in (("full", full), ("shortlist", restricted))}}
        log.info("shortlist on %s: %s", name, quality[name])
    # The recorded examples are what the bundle serves: decoded again with the shortlist.
    metrics = dict(manifest.metrics)
    if "examples" in metrics:
        metrics["examples"] = record_examples(
            restricted, [(e["source"], e["reference"]) for e in metrics["examples"]], beam_size)
    if "showcase" in metrics:
        texts = [e["source"] for e in metrics["showcase"]]
        metrics["showcase"] = [{"source": text, "beam": t.best.text} for text, t in zip(
            texts, restricted.translate(texts, options), strict=True)]
    manifest = replace(manifest, metrics=metrics, shortlist=replace(spec, quality=quality))
    rewrite_card(bundle, manifest)
    return _write(bundle, manifest)


def _write(bundle: Path, manifest: Manifest) -> Manifest:
    """The manifest of the bundle as it now is (this build's format: it has a shortlist)."""
    return write_manifest(bundle, replace(manifest, format_version=FORMAT_VERSION))
