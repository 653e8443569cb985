"""Text <-> ids as a bundle's model expects them (``TokenizerSpec`` in the manifest)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from service.bundle import BundleError, Manifest, SpecialTokens


class Tokenizer:
    """SentencePiece ids are the model's ids; the source ends with EOS."""

    def __init__(self, bundle_dir: Path, manifest: Manifest) -> None:
        spec = manifest.tokenizer
        self.special: SpecialTokens = manifest.special_tokens
        self.source_eos = spec.source_eos
        self.source = spm.SentencePieceProcessor(model_file=str(bundle_dir / spec.source_model))
        self.target = (self.source if spec.target_model == spec.source_model else
                       spm.SentencePieceProcessor(model_file=str(bundle_dir / spec.target_model)))

    def encode(self, text: str) -> list[int]:
        """Source ids of a non-empty text (with the final EOS where the model wants one)."""
        ids = self.source_ids(text)
        return [*ids, self.special.eos] if self.source_eos else ids

    def source_ids(self, text: str) -> list[int]:
        return self.source.encode(text)

    @property
    def source_size(self) -> int:
        return int(self.source.get_piece_size())

    def target_ids(self, text: str) -> list[int]:
        """Target ids of a reference translation (no BOS/EOS): what the model should emit."""
        return self.target.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.target.decode([int(i) for i in ids])

    def piece(self, target_id: int) -> str:
        return self.target.id_to_piece(int(target_id))

    def source_piece(self, source_id: int) -> str:
        return self.source.id_to_piece(int(source_id))

    def target_id(self, piece: str) -> int | None:
        """The target id of ``piece``, None if the vocabulary lacks it."""
        i = self.target.piece_to_id(piece)
        return None if i == self.target.unk_id() else i

    def source_id(self, piece: str) -> int | None:
        i = self.source.piece_to_id(piece)
        return None if i == self.source.unk_id() else i


class VocabularyTokenizer(Tokenizer):
    """SentencePiece pieces looked up in the model's own token lists (OpenNMT-py's
    vocabularies): unknown pieces become ``<unk>``; output ids become pieces, then text."""

    def __init__(self, bundle_dir: Path, manifest: Manifest) -> None:
        super().__init__(bundle_dir, manifest)
        vocab = json.loads((bundle_dir / str(manifest.tokenizer.vocabulary)).read_text("utf-8"))
        self.src_tokens: list[str] = vocab["src"]
        self.src_vocab: dict[str, int] = {}
        for i, token in enumerate(self.src_tokens):
            self.src_vocab.setdefault(token, i)
        self.tgt_tokens: list[str] = vocab["tgt"]
        self.tgt_vocab = {t: i for i, t in reversed(list(enumerate(self.tgt_tokens)))}

    def source_ids(self, text: str) -> list[int]:
        unk = self.special.unk
        return [self.src_vocab.get(p, unk) for p in self.source.encode(text, out_type=str)]

    @property
    def source_size(self) -> int:
        return len(self.src_tokens)

    def target_ids(self, text: str) -> list[int]:
        unk = self.special.unk
        return [self.tgt_vocab.get(p, unk) for p in self.target.encode(text, out_type=str)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.target.decode_pieces([self.tgt_tokens[int(i)] for i in ids])

    def piece(self, target_id: int) -> str:
        return self.tgt_tokens[int(target_id)]

    def source_piece(self, source_id: int) -> str:
        return self.src_tokens[int(source_id)]

    def target_id(self, piece: str) -> int | None:
        return self.tgt_vocab.get(piece)

    def source_id(self, piece: str) -> int | None:
        return self.src_vocab.get(piece)


def load_tokenizer(bundle_dir: Path, manifest: Manifest) -> Tokenizer:
    kinds = {"sentencepiece": Tokenizer, "sentencepiece+vocabulary": VocabularyTokenizer}
    kind = kinds.get(manifest.tokenizer.type)
    if kind is None:
        raise BundleError(f"unknown tokenizer type {manifest.tokenizer.type!r}: this build "
                         f"reads {', '.join(kinds)}")
    return kind(Path(bundle_dir), manifest)
