"""The inference pipeline: mask + tokenize -> encode + search -> detokenize + unmask."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.bundle import Manifest, verify_bundle
from service.decoding import (
    EncodedBatch,
    Engine,
    Hypothesis,
    Search,
    Vocabulary,
    forced_log_probs,
    max_lengths,
)
from service.driver import Driver
from service.glossary import Glossary, GlossaryError
from service.placeholders import (
    SENTINELS,
    AppliedTerm,
    Masked,
    TermSpan,
    as_placed,
    mask,
    unmask,
    unmask_terms,
)
from service.runtime import OnnxSeq2Seq, SessionOptions
from service.scheduler import Job, Scheduler
from service.shortlist import Shortlist, ShortlistError
from service.tokenizer import load_tokenizer


class InputTooLong(ValueError):
    """A text has more subword tokens than the model accepts."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"text {index} has {tokens} tokens; the limit is {limit}")
        self.index, self.tokens, self.limit = index, tokens, limit


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 4  # 1 = greedy
    n_best: int = 1
    length_penalty: float | None = None  # alpha; None: the bundle's (tuned) value
    max_length_ratio: float | None = None  # steps <= ratio * source + extra; None: bundle's
    max_length: int | None = None  # absolute cap on target tokens (None: the model's)
    keep_placeholders: bool = True  # constrain search: every source placeholder, no other
    attention: bool = False  # keep the attention matrix of each candidate
    # Model first: the beam of the decode that masks the terms where the model's own
    # candidates missed one, clamped to [n_best, beam_size]; None: beam_size. It is a
    # second decode of a fraction of the texts, and a narrower beam costs little there.
    # (Constrained search keeps beam_size: dynamic beam allocation shares it out.)
    fallback_beam: int | None = 2


@dataclass
class Candidate:
    text: str
    score: float
    token_ids: list[int]
    attention: np.ndarray | None  # (T, S): a row per generated token, plus one for EOS if
    # ended; only with DecodeOptions.attention
    ended: bool  # the model emitted EOS (False: cut at the length limit)
    terms: list[AppliedTerm] = field(default_factory=list)  # glossary terms, where they went


@dataclass
class Translation:
    source_ids: list[int]  # including the final EOS
    masked: Masked
    candidates: list[Candidate] = field(default_factory=list)  # best first

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


@dataclass(frozen=True)
class DecodeStats:
    """What decoding one batch cost."""

    encode_seconds: float
    decoder_steps: int  # decoder calls (each over all rows still running)
    redone: int = 0  # model-first rows decoded again with their terms enforced


@dataclass
class Decoded:
    translations: list[Translation]  # one per row, in order
    stats: DecodeStats


GLOSSARY_METHODS = ("mask", "constrain")


@dataclass
class Prepared:
    """A tokenized request row, ready to be batched with others."""

    masked: Masked
    ids: list[int]  # source ids (+ EOS where the model wants it); empty for an empty text
    # Glossary terms the search must emit as they are (the "constrain" method): where each
    # is in the source, and its target pieces
    terms: tuple[TermSpan, ...] = ()
    constraints: tuple[tuple[int, ...], ...] = ()
    # Decoded instead where this row's candidates miss one of its terms (the model's own
    # translation first: ``Translator.prepare(model_first=True)``)
    fallback: Prepared | None = None


class Translator:
    """A verified bundle loaded into onnxruntime, translating lists of texts.

    ``shortlist``: score only each sentence's shortlist candidates (None: as the bundle
    says; True fails on a bundle without a shortlist)."""

    def __init__(self, bundle_dir: Path, variant: str = "auto",
                 options: SessionOptions | None = None, shortlist: bool | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = verify_bundle(self.bundle_dir)
        self.tokenizer = load_tokenizer(self.bundle_dir, self.manifest)
        spec = self.manifest.shortlist
        if shortlist and spec is None:
            raise ShortlistError(f"{self.bundle_dir} has no shortlist: build one with "
                                 "`python -m model_export shortlist`, or turn it off")
        self.shortlist: Shortlist | None = None
        if spec is not None and (spec.default if shortlist is None else shortlist):
            self.shortlist = Shortlist.load(self.bundle_dir / spec.file,
                                            self.tokenizer.source_size,
                                            self.manifest.architecture.vocab_size)
        self.model = OnnxSeq2Seq(self.bundle_dir, self.manifest, variant,
                                 options or SessionOptions(), self.shortlist is not None)
        self.special = self.manifest.special_tokens
        sides = self.manifest.tokenizer
        self._joint_vocabulary = sides.source_model == sides.target_model and not sides.vocabulary
        self.defaults = self.manifest.decoding_defaults
        # Each sentinel's id on both sides (one id space unless the model has two vocabularies)
        pairs = [(self.tokenizer.source_id(s), self.tokenizer.target_id(s)) for s in SENTINELS
                 if self.manifest.placeholders]
        known = [(src, tgt) for src, tgt in pairs if src is not None and tgt is not None]
        self.source_sentinel_ids = np.array([src for src, _ in known], dtype=np.int64)
        self.sentinel_ids = np.array([tgt for _, tgt in known], dtype=np.int64)
        # Target pieces that continue a word: SentencePiece marks a word's first piece with
        # "▁", so a piece starting with a letter or digit goes on with the word before it
        # (a vocabulary without the marker: none is known to)
        pieces = [self.tokenizer.piece(i) for i in range(self.manifest.architecture.vocab_size)]
        marked = any(p.startswith("▁") for p in pieces)
        self.continuation = np.array([marked and p[:1].isalnum() for p in pieces], dtype=bool)

    def prepare(self, texts: Sequence[str], max_tokens: int | None = None,
                glossary: Glossary | None = None, method: str = "mask",
                model_first: bool = False) -> list[Prepared]:
        """Mask (if the model was trained so) and tokenize; raise :class:`InputTooLong`
        naming the first offending text. ``glossary`` terms are masked like placeholders
        (``method`` "mask": the search must keep their sentinels) or become lexical
        constraints ("constrain": the search must emit their target pieces).

        ``model_first``: a text with terms is decoded as it is first, keeping every finished
        hypothesis of its beam, and again with its terms enforced (its row's ``fallback``)
        only where too few of them have every term (:meth:`with_terms`): where the model
        already writes the glossary's terms, its own sentence stands."""
        limit = min(max_tokens or self.manifest.max_source_tokens,
                    self.manifest.max_source_tokens)
        if method not in GLOSSARY_METHODS:
            raise ValueError(f"unknown glossary method {method!r}: valid are "
                             f"{', '.join(GLOSSARY_METHODS)}")
        masking = method == "mask"
        if glossary is not None and masking and not self.manifest.placeholders:
            raise GlossaryError(f"model {self.manifest.model_id} takes no glossary: it was not "
                                "trained with placeholder sentinels, which carry the terms")
        rows = []
        for i, text in enumerate(texts):
            terms = glossary.find(text) if glossary is not None else []
            masked = (mask(text, terms if masking else ()) if self.manifest.placeholders
                      else Masked(text, ()))
            ids = self.tokenizer.encode(masked.text) if text.strip() else []
            if len(ids) > limit:
                raise InputTooLong(i, len(ids), limit)
            if masking or not terms:
                row = Prepared(masked, ids)
            else:
                constraints = tuple(tuple(self.tokenizer.target_ids(t.target)) for t in terms)
                row = Prepared(masked, ids, tuple(terms), constraints)
            if model_first and terms:
                plain, plain_ids = masked, ids
                if masking:  # the text as it is, placeholders masked
                    plain = mask(text) if self.manifest.placeholders else Masked(text, ())
                    plain_ids = self.tokenizer.encode(plain.text)
                    if len(plain_ids) > limit:
                        raise InputTooLong(i, len(plain_ids), limit)
                row = Prepared(plain, plain_ids, tuple(terms), fallback=row)
            rows.append(row)
        return rows

    @staticmethod
    def with_terms(row: Prepared, candidates: Iterable[Candidate], n_best: int
                   ) -> list[Candidate] | None:
        """The ``n_best`` best candidates that have each of the row's terms, as often as the
        source (the target term's case, except a capital that starts the output); None when
        fewer do. Reads ``candidates`` (best first) only as far as it needs."""
        held = []
        for c in candidates:
            if len(c.terms) == len(row.terms):
                held.append(c)
                if len(held) == n_best:
                    return held
        return None

    @property
    def variant(self) -> str:
        """The variant actually loaded (``auto`` resolved)."""
        return self.model.variant

    def translate(self, texts: Sequence[str], options: DecodeOptions = DecodeOptions()
                  ) -> list[Translation]:
        return self.translate_prepared(self.prepare(texts), options).translations

    def translate_running(self, rows: Sequence[Prepared], options: DecodeOptions,
                          running: int = 64) -> list[Translation]:
        """Decode many rows with step-level batching: up to ``running`` sentences at once,
        refilled between steps as sentences finish (what the service does with requests)."""
        return self.translate_prepared(rows, options, running).translations

    def translate_prepared(self, rows: Sequence[Prepared], options: DecodeOptions,
                           running: int | None = None) -> Decoded:
        """Decode the rows through the driver the service uses, ``running`` at once (None:
        all in one batch); empty texts give empty translations."""
        results = [Translation(r.ids, r.masked, [self.empty_candidate()]) for r in rows]
        unbounded = sys.maxsize
        scheduler: Scheduler[Prepared, DecodeOptions] = Scheduler(
            unbounded, running or max(len(rows), 1), unbounded, unbounded, admit_wait_s=0.0)
        job = Job(rows, [len(r.ids) for r in rows], options, 0.0)
        scheduler.submit(job)
        driver = Driver(self, scheduler, self.engine())
        for sentence, candidates in driver.run():
            results[sentence.row] = Translation(sentence.data.ids, sentence.data.masked,
                                                candidates)
        redone = sum(s.again is not None for s in job.sentences)
        stats = DecodeStats(job.encode_seconds, driver.engine.steps, redone)
        return Decoded(results, stats)

    def log_probability(self, texts: Sequence[str], targets: Sequence[Sequence[int]]
                        ) -> list[float]:
        """Log-probability of each target (generated ids, no BOS/EOS) as a translation of
        the text (forced decoding; with a shortlist, over each text's candidates as the
        search scores them): compares outputs across machines and versions."""
        rows = self.prepare(texts)
        if not all(row.ids for row in rows):
            raise ValueError("forced decoding needs non-empty texts")
        src, lengths = self.encode([row.ids for row in rows])
        encoded = self.model.encode(src, lengths)
        vocab = None
        if self.shortlist is not None:
            vocab = Vocabulary.of([self.candidates_of(row.ids) for row in rows])
        scores = forced_log_probs(self.model, encoded, self.special.bos, self.special.eos,
                                  targets, vocab)
        return [float(s) for s in scores]

    def encode(self, batch: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad a list of id lists into (B, S) ids and (B,) lengths."""
        lengths = np.array([len(ids) for ids in batch], dtype=np.int64)
        src = np.full((len(batch), int(lengths.max())), self.special.pad, dtype=np.int64)
        for row, ids in enumerate(batch):
            src[row, : len(ids)] = ids
        return src, lengths

    def engine(self, max_step_cost: int = 0) -> Engine:
        """An empty running batch over this model (see :mod:`service.decoding.engine`)."""
        return Engine(self.model, self.special.bos, self.special.eos,
                      self.sentinel_ids, self.shortlist is not None, max_step_cost,
                      self.continuation)

    def encode_runs(self, rows: Sequence[Prepared]) -> list[tuple[list[int], EncodedBatch]]:
        """Run the encoder over non-empty rows in runs of similar lengths
        (:func:`encoder_runs`): each run's rows (indices of ``rows``) and their encoding."""
        ids = [r.ids for r in rows]
        return [(run, self.model.encode(*self.encode([ids[i] for i in run])))
                for run in encoder_runs([len(i) for i in ids])]

    def search(self, row: Prepared, options: DecodeOptions, again: bool = False) -> Search:
        """How ``row`` is searched under ``options`` (limits, beam, length penalty,
        placeholder constraint); ``again``: a model-first text's decode with its terms
        enforced (masked: at ``options.fallback_beam``)."""
        cap = min(options.max_length or self.manifest.max_target_tokens,
                  self.manifest.max_target_tokens)
        d = self.defaults
        ratio = d.max_length_ratio if options.max_length_ratio is None else options.max_length_ratio
        [limit] = max_lengths(np.array([len(row.ids)]), ratio, cap, d.max_length_extra)
        required = None
        if options.keep_placeholders and self.sentinel_ids.size:
            required = self._sentinels_in(row.ids)
        candidates = None
        if self.shortlist is not None:
            candidates = self.candidates_of(row.ids, [t for c in row.constraints for t in c])
        alpha = d.length_penalty if options.length_penalty is None else options.length_penalty
        beam, n_best = options.beam_size, options.n_best
        if row.fallback is not None:  # model first: any of the beam's may hold the terms
            n_best = beam
        elif again and options.fallback_beam is not None and not row.constraints:
            beam = min(beam, max(n_best, options.fallback_beam))  # masked terms
        if beam == 1 and d.beam_rule == "gnmt":
            alpha = 0.0  # greedy scores are plain log-probabilities
        return Search(int(limit), beam, n_best if beam > 1 else 1, alpha, required,
                      d.beam_rule, candidates, options.attention, row.constraints)

    def candidates_of(self, source_ids: Sequence[int], forced: Sequence[int] = ()
                      ) -> np.ndarray:
        """The shortlist's target ids for a source, with EOS, its placeholders, ``forced``
        (a glossary's constraints) and (one vocabulary for both sides) its own pieces, which
        names, acronyms and numbers copy."""
        assert self.shortlist is not None
        forced = [self.special.eos, *self.sentinel_ids[self._sentinels_in(source_ids) > 0],
                  *forced]
        if self._joint_vocabulary:
            forced += source_ids
        return self.shortlist.for_source(source_ids, forced)

    def _sentinels_in(self, source_ids: Sequence[int]) -> np.ndarray:
        """(P,) how often each sentinel occurs in the source."""
        return (np.array(source_ids)[:, None] == self.source_sentinel_ids[None, :]).sum(axis=0)

    def candidates(self, hyps: Sequence[Hypothesis], row: Prepared) -> Iterator[Candidate]:
        """Each hypothesis as a candidate translation, made as it is read."""
        return (self._candidate(h, row) for h in hyps)

    @staticmethod
    def empty_candidate() -> Candidate:
        """The translation of an empty text."""
        return Candidate("", 0.0, [], np.zeros((0, 0), np.float32), True)

    def _candidate(self, hyp: Hypothesis, row: Prepared) -> Candidate:
        text, terms, masked = self.tokenizer.decode(hyp.tokens), list[AppliedTerm](), row.masked
        if masked.terms:
            text, terms = unmask_terms(text, masked)
        elif self.manifest.placeholders:
            text = unmask(text, masked.placeholders)
        if row.terms:
            text, terms = find_terms(text, row.terms)
        return Candidate(text, hyp.score, hyp.tokens, hyp.attention, hyp.ended, terms)

    def attention_of(self, t: Translation) -> tuple[list[str], list[str], np.ndarray]:
        """The best candidate's source and target pieces (EOS shown where the model read or
        emitted it, sentinels as their placeholders) and its attention matrix (target x
        source); the candidate must have been decoded with ``DecodeOptions.attention``."""
        best = t.best
        if best.attention is None:
            raise ValueError("decoded without DecodeOptions.attention")
        eos = [self.special.eos] if best.ended else []
        return (self.pieces(t.source_ids, t.masked, source=True),
                self.pieces(best.token_ids + eos, t.masked), best.attention)

    def term_pieces(self, t: Translation) -> dict[int, int]:
        """Target piece -> source piece of each glossary term of the best candidate (what
        :func:`service.alignment.align` takes as known): a masked term's sentinel on both
        sides, matched in order; a constrained term's target pieces to the pieces of the
        source term, in proportion."""
        known: dict[int, int] = {}
        if not t.masked.terms:
            source = [self.tokenizer.source_piece(i) for i in t.source_ids]
            target = [self.tokenizer.piece(i) for i in t.best.token_ids]
            for term in t.best.terms:  # the term as constrained, else a case variant
                src = _pieces_of(source, term.source)
                tgt = _pieces_of(target, term.target, exact=True) or _pieces_of(target,
                                                                                 term.target)
                if src and tgt:
                    known.update({tgt[0] + j: src[0] + j * len(src) // len(tgt)
                                  for j in range(len(tgt))})
            return known
        indices = {index for index, _, _ in t.masked.terms if index < self.sentinel_ids.size}
        for index in indices:
            src = [i for i, x in enumerate(t.source_ids) if x == self.source_sentinel_ids[index]]
            tgt = [i for i, x in enumerate(t.best.token_ids) if x == self.sentinel_ids[index]]
            known.update(zip(tgt, src, strict=False))
        return known

    def pieces(self, ids: Sequence[int], masked: Masked, source: bool = False) -> list[str]:
        """Subword strings of target (or ``source``) ids for display, sentinels shown as
        their placeholders (a glossary term's as its source or target term)."""
        piece = self.tokenizer.source_piece if source else self.tokenizer.piece
        ends_with_eos = self.tokenizer.source_eos if source else True
        shown = list(masked.placeholders)
        if source:
            for index, term, _ in masked.terms:
                shown[index] = term
        out = []
        for i in ids:
            text = "</s>" if ends_with_eos and i == self.special.eos else piece(int(i))
            masked_piece = self.manifest.placeholders and "<ph" in text
            out.append(unmask(text, tuple(shown)) if masked_piece else text)
        return out


# What one more encoder run costs, in steps of one sentence: a run of n sentences padded to
# L tokens took about 0.18 + 0.016 * L * (1 + n) ms (onnxruntime's CPU GRU, 2 cores, fit over
# n = 1..16, L = 4..32), ~11 row-steps before its first. Twice that, so that a cut must
# clearly pay (each run is one more admission into the engine's store): encoding 2-6 random
# held-out strings went at 0.96-1.07x one run's speed at 11, 0.98-1.09x at 20; 8-16 at
# 1.12-1.30x with either.
RUN_OVERHEAD_STEPS = 20


def encoder_runs(lengths: Sequence[int]) -> list[list[int]]:
    """The sentences (indices of ``lengths``) to encode together. The encoder steps every
    sentence of a run to the longest one's length: a 38-token sentence batched with seven
    8-token ones costs twice as much as the two runs apart. Runs are cut from the sentences
    sorted by length so that the sum over runs of ``RUN_OVERHEAD_STEPS + longest * (1 +
    sentences)`` is least, found by dynamic programming over the distinct lengths (a cut
    between sentences of one length never pays: the later ones cost as much in either run)."""
    n = len(lengths)
    if n < 2 or max(lengths) * n - sum(lengths) <= RUN_OVERHEAD_STEPS:
        return [list(range(n))]  # less padding than a run's overhead: no cut pays
    order = sorted(range(n), key=lambda i: -lengths[i])
    starts = [k for k in range(n) if k == 0 or lengths[order[k]] != lengths[order[k - 1]]]
    bounds = [*starts, n]  # sentences order[bounds[b]:bounds[b + 1]] share a length
    best, cut = [0.0] * len(bounds), [0] * len(bounds)
    for j in range(1, len(bounds)):  # best[j]: the first bounds[j] sentences
        best[j], cut[j] = min((best[i] + RUN_OVERHEAD_STEPS
                               + lengths[order[bounds[i]]] * (1 + bounds[j] - bounds[i]), i)
                              for i in range(j))
    runs, j = [], len(bounds) - 1
    while j:
        runs.append(order[bounds[cut[j]] : bounds[j]])
        j = cut[j]
    return runs[::-1]


def _pieces_of(pieces: Sequence[str], term: str, exact: bool = False) -> list[int]:
    """The first run of ``pieces`` that spells ``term`` (any spacing; any case unless
    ``exact``)."""
    def fold(text: str) -> str:
        return text if exact else text.casefold()

    wanted = fold(" ".join(term.split()))
    for start, first in enumerate(pieces):
        if not first.strip("▁"):
            continue
        text = ""
        for end in range(start, len(pieces)):
            text = fold(text + pieces[end].replace("▁", " "))
            spelled = " ".join(text.split())
            if spelled == wanted:
                return list(range(start, end + 1))
            if not wanted.startswith(spelled):
                break
    return []


def find_terms(text: str, terms: Sequence[TermSpan]) -> tuple[str, list[AppliedTerm]]:
    """Where the search put each term (in source order, each occurrence once), as the
    glossary writes it or, starting the output, with a capital first letter; a term that
    starts the output gets that capital, as a masked one does."""
    applied, taken = [], set[int]()
    for term in terms:
        target = term.target
        spelled = {target, as_placed(target, "")}
        alternatives = "|".join(map(re.escape, sorted(spelled, reverse=True)))
        for match in re.finditer(rf"(?<!\w)(?:{alternatives})(?!\w)", text):
            before = text[: match.start()]
            if match.group() not in (target, as_placed(target, before)):
                continue  # a capital the glossary does not have, inside the sentence
            if match.start() not in taken:
                taken.add(match.start())
                text = before + as_placed(match.group(), before) + text[match.end():]
                applied.append(AppliedTerm(term.source, text[match.start():match.end()],
                                           (term.start, term.end), match.span()))
                break
    return text, applied


def translate_corpus(translator: Translator, texts: Sequence[str], options: DecodeOptions,
                     batch_size: int = 64) -> list[str]:
    """Translate many texts, ``batch_size`` running at once, in length order (less padding;
    offline evaluation)."""
    rows = translator.prepare(texts)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    decoded = translator.translate_running([rows[i] for i in order], options, batch_size)
    out = [""] * len(rows)
    for i, t in zip(order, decoded, strict=True):
        out[i] = t.best.text
    return out
