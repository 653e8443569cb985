"""The model bundle contract: file names, ONNX I/O names, manifest schema and verification.

A bundle is a directory::

    manifest.json        this schema (FORMAT_VERSION), with the sha256 of every other file
    encoder.onnx         (src_ids, src_lengths) -> (encoder_outputs, decoder_init, attention_keys)
    decoder.onnx         one decoding step, see DECODER_INPUTS / DECODER_OUTPUTS
    encoder.int8.onnx    optional int8 variants
    decoder.int8.onnx
    spm.model            the SentencePiece model (joint source/target vocabulary)
    shortlist.npz        optional: the target pieces each source piece may produce
    README.md            the model card

Imported models may add their own vocabularies (``tokenizer`` in the manifest): SentencePiece
pieces mapped to ids through ``vocab.json``, a separate ``spm.target.model``.

The offline exporter (writer) and the service (reader) both import this module, so it stays
numpy/json only: the serving image has no deep-learning framework.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.decoding.beam import RULES

FORMAT_VERSION = 4  # what this build writes
# 1: the decoder step without in-graph gather, penalty, top-k; 2: no tokenizer, placeholders
# or decoding rules in the manifest (SentencePiece ids, placeholders masked, GNMT beam rule);
# 3: no vocabulary shortlist
READABLE_FORMATS = (1, 2, 3, 4)
MANIFEST = "manifest.json"
TOKENIZER = "spm.model"
TARGET_TOKENIZER = "spm.target.model"  # only where the target side has its own model
VOCABULARY = "vocab.json"  # {"src": [...], "tgt": [...]}: the model's ids of the pieces
MODEL_CARD = "README.md"
SHORTLIST = "shortlist.npz"  # service.shortlist.Shortlist

# variant name -> (encoder file, decoder file), the most accurate first
VARIANT_FILES = {
    "fp32": ("encoder.onnx", "decoder.onnx"),
    "int8": ("encoder.int8.onnx", "decoder.int8.onnx"),
}

# Encoder: src_ids (B, S) int64, src_lengths (B,) int64
ENCODER_INPUTS = ("src_ids", "src_lengths")
# encoder_outputs (B, S, 2*He), decoder_init (B, Hd), attention_keys (B, S, K)
ENCODER_OUTPUTS = ("encoder_outputs", "decoder_init", "attention_keys")
# One decoder step over R rows (hypotheses) of B sentences. Encoder states are given once per
# sentence and gathered per row inside the graph (row_sentence); the placeholder constraint
# is a penalty (0 or -inf) added to the log-probabilities of a few tokens (penalty_ids);
# top_k: how many best tokens per row to return.
#   prev_tokens (R,) int64, hidden (R, Hd), encoder_outputs (B, S, 2*He),
#   attention_keys (B, S, K), src_mask (B, S) bool, row_sentence (R,) int64,
#   penalty_ids (C,) int64, penalties (R, C) float32, top_k (1,) int64
DECODER_INPUTS = ("prev_tokens", "hidden", "encoder_outputs", "attention_keys", "src_mask",
                  "row_sentence", "penalty_ids", "penalties", "top_k")
# top_log_probs (R, k) best first, top_ids (R, k) int64 (ties: lower id first),
# next_hidden (R, Hd), attention (R, S), log_probs (R, V) (penalties applied; fetched only
# by forced decoding: onnxruntime copies out just the outputs asked for)
DECODER_OUTPUTS = ("top_log_probs", "top_ids", "next_hidden", "attention", "log_probs")
# Format 1 decoders: one row per sentence copy, full log-probabilities, no penalty or top-k.
DECODER_INPUTS_V1 = DECODER_INPUTS[:5]
DECODER_OUTPUTS_V1 = ("log_probs", "next_hidden", "attention")


class BundleError(Exception):
    """A bundle that cannot be served: missing, altered or of an unknown format."""


@dataclass(frozen=True)
class SpecialTokens:
    pad: int
    unk: int
    bos: int
    eos: int


@dataclass(frozen=True)
class Architecture:
    attention: str  # "bahdanau" | "luong-dot" | "luong-general"
    vocab_size: int
    emb_dim: int
    enc_hidden: int  # per direction; encoder outputs are 2 * enc_hidden wide
    dec_hidden: int
    attn_dim: int
    num_parameters: int
    family: str = "attn-translate"  # or "opennmt-py": where the weights come from
    details: dict[str, Any] = field(default_factory=dict)  # family-specific (layers, cell)


@dataclass(frozen=True)
class TokenizerSpec:
    """How text becomes ids. ``sentencepiece``: the ids are the model's own, the source ends
    with EOS. ``sentencepiece+vocabulary``: pieces are looked up in ``vocab.json`` (unknown
    ones map to ``<unk>``), no EOS on the source (OpenNMT-py's convention)."""

    type: str = "sentencepiece"
    source_model: str = TOKENIZER
    target_model: str = TOKENIZER
    vocabulary: str | None = None
    source_eos: bool = True

    def files(self) -> set[str]:
        return {self.source_model, self.target_model, *([self.vocabulary] if self.vocabulary
                                                         else [])}


@dataclass(frozen=True)
class DecodingDefaults:
    """The search a bundle is served with unless a request says otherwise."""

    length_penalty: float = 0.6  # alpha
    # gnmt: ((5 + n) / 6) ** alpha, a sentence ends with beam_size finished hypotheses;
    # opennmt: (n + 1) ** alpha, it ends when the best candidate of a step is finished
    # (onmt_translate's BeamSearch with its default length_penalty avg)
    beam_rule: str = "gnmt"
    max_length_ratio: float = 2.0  # target steps <= int(ratio * source tokens) + extra
    max_length_extra: int = 10

    def __post_init__(self) -> None:
        if self.beam_rule not in RULES:
            raise BundleError(f"decoding.beam_rule {self.beam_rule!r} is not one of "
                              f"{', '.join(RULES)}")


@dataclass(frozen=True)
class ShortlistSpec:
    """The bundle's vocabulary shortlist (:mod:`service.shortlist`) and what it costs."""

    file: str = SHORTLIST
    default: bool = True  # served with it unless SERVICE_SHORTLIST says otherwise
    method: str = "ibm1"  # how the table was built
    top: int = 100  # target pieces listed per source piece
    frequent: int = 500  # most frequent target pieces every sentence may produce
    # measured at export: {test set: {"full": {...}, "shortlist": {...}}} (BLEU, chrF, ...)
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model_id: str
    source_lang: str
    target_lang: str
    architecture: Architecture
    special_tokens: SpecialTokens
    max_source_tokens: int
    max_target_tokens: int
    opset: int
    variants: dict[str, dict[str, str]]  # {"fp32": {"encoder": ..., "decoder": ...}}
    files: dict[str, str]  # file name -> sha256
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)  # DecodingDefaults fields
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    placeholders: bool = True  # mask placeholders as sentinels: the model was trained so
    shortlist: ShortlistSpec | None = None

    @property
    def decoding_defaults(self) -> DecodingDefaults:
        return DecodingDefaults(**self.decoding)

    def resolve_variant(self, requested: str) -> str:
        """``auto``: the most accurate variant the bundle ships; else ``requested`` if shipped."""
        if requested == "auto":
            return next(v for v in (*VARIANT_FILES, *self.variants) if v in self.variants)
        if requested not in self.variants:
            raise BundleError(f"bundle has no {requested!r} variant: valid are "
                              f"{', '.join(sorted(self.variants))} or 'auto'")
        return requested

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("format_version")
        if version not in READABLE_FORMATS:
            raise BundleError(
                f"manifest format_version {version!r} is not supported; "
                f"this build reads versions {', '.join(map(str, READABLE_FORMATS))}"
            )
        try:
            fields = dict(data)
            fields["architecture"] = Architecture(**data["architecture"])
            fields["special_tokens"] = SpecialTokens(**data["special_tokens"])
            fields["tokenizer"] = TokenizerSpec(**data.get("tokenizer", {}))
            if data.get("shortlist") is not None:
                fields["shortlist"] = ShortlistSpec(**data["shortlist"])
            DecodingDefaults(**data.get("decoding", {}))  # unknown keys fail here
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest does not match format {FORMAT_VERSION}: {exc}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse ``manifest.json`` without checking the other files."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} not found: is {bundle_dir} a model bundle?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return Manifest.from_dict(data)


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Read the manifest and check that every listed file exists with its recorded sha256."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    inside = bundle_dir.resolve()
    for name, expected in sorted(manifest.files.items()):
        path = bundle_dir / name
        if "/" in name or "\\" in name or not path.resolve().is_relative_to(inside):
            raise BundleError(f"bundle file {name!r} is not a file of {bundle_dir}: a manifest "
                              "names files in its own directory only")
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {path} was altered: sha256 {actual[:12]}… "
                f"but the manifest records {expected[:12]}…"
            )
    needed = manifest.tokenizer.files() | {
        f for files in manifest.variants.values() for f in files.values()} | (
        {manifest.shortlist.file} if manifest.shortlist else set())
    unlisted = sorted(needed - manifest.files.keys())
    if unlisted:
        raise BundleError(f"manifest lists no sha256 for {', '.join(unlisted)}")
    return manifest


def hash_files(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest itself."""
    return {
        p.name: sha256_file(p)
        for p in sorted(Path(bundle_dir).iterdir())
        if p.is_file() and p.name != MANIFEST
    }
