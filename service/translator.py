"""The inference pipeline: mask + tokenize -> encode + search -> detokenize + unmask."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sentencepiece as spm

from service.bundle import TOKENIZER, Manifest, verify_bundle
from service.decoding import Hypothesis, Placeholders, beam_search, greedy_search, max_lengths
from service.placeholders import SENTINELS, Masked, mask, unmask
from service.runtime import OnnxSeq2Seq, SessionOptions


class InputTooLong(ValueError):
    """A text has more subword tokens than the model accepts."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"text {index} has {tokens} tokens; the limit is {limit}")
        self.index, self.tokens, self.limit = index, tokens, limit


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 4  # 1 = greedy
    n_best: int = 1
    length_penalty: float | None = None  # GNMT alpha; None: the bundle's tuned value
    max_length_ratio: float = 2.0  # target steps <= ratio * source tokens + 10
    max_length: int | None = None  # absolute cap on target tokens (None: the model's)
    keep_placeholders: bool = True  # constrain search: every source placeholder, no other


@dataclass
class Candidate:
    text: str
    score: float
    token_ids: list[int]
    attention: np.ndarray  # (T, S)


@dataclass
class Translation:
    source_ids: list[int]  # including the final EOS
    masked: Masked
    candidates: list[Candidate] = field(default_factory=list)  # best first

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


@dataclass
class Prepared:
    """A tokenized request row, ready to be batched with others."""

    masked: Masked
    ids: list[int]  # source ids + EOS; empty for an empty text


class Translator:
    """A verified bundle loaded into onnxruntime, translating lists of texts."""

    def __init__(self, bundle_dir: Path, variant: str = "auto",
                 options: SessionOptions | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = verify_bundle(self.bundle_dir)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.bundle_dir / TOKENIZER))
        if variant == "auto":  # the most accurate variant the bundle ships
            variant = next(v for v in ("fp32", "int8", *self.manifest.variants)
                           if v in self.manifest.variants)
        self.model = OnnxSeq2Seq(self.bundle_dir, self.manifest, variant,
                                 options or SessionOptions())
        self.special = self.manifest.special_tokens
        self.length_penalty = float(self.manifest.decoding.get("length_penalty", 0.6))
        self.last_encode_seconds = 0.0
        ids = [self.sp.piece_to_id(s) for s in SENTINELS]
        self.sentinel_ids = np.array([i for i in ids if i != self.sp.unk_id()], dtype=np.int64)

    def prepare(self, texts: Sequence[str], max_tokens: int | None = None) -> list[Prepared]:
        """Mask and tokenize; raise :class:`InputTooLong` naming the first offending text."""
        limit = min(max_tokens or self.manifest.max_source_tokens,
                    self.manifest.max_source_tokens)
        rows = []
        for i, text in enumerate(texts):
            masked = mask(text)
            ids = self.sp.encode(masked.text) if text.strip() else []
            if len(ids) + 1 > limit:
                raise InputTooLong(i, len(ids) + 1, limit)
            rows.append(Prepared(masked, ids + [self.special.eos] if ids else []))
        return rows

    def translate(self, texts: Sequence[str], options: DecodeOptions = DecodeOptions()
                  ) -> list[Translation]:
        return self.translate_prepared(self.prepare(texts), options)

    def translate_prepared(self, rows: Sequence[Prepared], options: DecodeOptions
                           ) -> list[Translation]:
        """Decode all non-empty rows as one batch; empty texts give empty translations."""
        results = [Translation(r.ids, r.masked) for r in rows]
        todo = [i for i, r in enumerate(rows) if r.ids]
        if todo:
            hypotheses = self._search([rows[i].ids for i in todo], options)
            for i, hyps in zip(todo, hypotheses, strict=True):
                results[i].candidates = [self._candidate(h, rows[i].masked) for h in hyps]
        for r in results:
            if not r.candidates:
                r.candidates = [Candidate("", 0.0, [], np.zeros((0, 0), np.float32))]
        return results

    def encode(self, batch: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad a list of id lists into (B, S) ids and (B,) lengths."""
        lengths = np.array([len(ids) for ids in batch], dtype=np.int64)
        src = np.full((len(batch), int(lengths.max())), self.special.pad, dtype=np.int64)
        for row, ids in enumerate(batch):
            src[row, : len(ids)] = ids
        return src, lengths

    def _search(self, batch: Sequence[list[int]], options: DecodeOptions
                ) -> list[list[Hypothesis]]:
        src, lengths = self.encode(batch)
        started = time.perf_counter()
        encoded = self.model.encode(src, lengths)
        self.last_encode_seconds = time.perf_counter() - started  # read by the batcher
        cap = min(options.max_length or self.manifest.max_target_tokens,
                  self.manifest.max_target_tokens)
        limit = max_lengths(lengths, options.max_length_ratio, 10, cap)
        placeholders = None
        if options.keep_placeholders and self.sentinel_ids.size:
            required = (src[:, :, None] == self.sentinel_ids[None, None, :]).sum(axis=1)
            placeholders = Placeholders(self.sentinel_ids, required)  # (B, P) counts
        if options.beam_size == 1:
            return [[h] for h in greedy_search(self.model, encoded, self.special.bos,
                                               self.special.eos, limit, placeholders)]
        return beam_search(self.model, encoded, self.special.bos, self.special.eos, limit,
                           beam_size=options.beam_size, n_best=options.n_best,
                           alpha=self.length_penalty if options.length_penalty is None
                           else options.length_penalty, placeholders=placeholders)

    def _candidate(self, hyp: Hypothesis, masked: Masked) -> Candidate:
        text = unmask(self.sp.decode(hyp.tokens), masked.placeholders)
        return Candidate(text, hyp.score, hyp.tokens, hyp.attention)

    def pieces(self, ids: Sequence[int], masked: Masked) -> list[str]:
        """Subword strings for display, sentinels shown as their placeholders."""
        out = []
        for i in ids:
            piece = "</s>" if i == self.special.eos else self.sp.id_to_piece(int(i))
            out.append(unmask(piece, masked.placeholders) if "<ph" in piece else piece)
        return out


def translate_corpus(translator: Translator, texts: Sequence[str], options: DecodeOptions,
                     batch_size: int = 64) -> list[str]:
    """Translate many texts in length-sorted batches (offline evaluation)."""
    rows = translator.prepare(texts)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    out = [""] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, t in zip(chunk, translator.translate_prepared([rows[i] for i in chunk], options),
                        strict=True):
            out[i] = t.best.text
    return out
