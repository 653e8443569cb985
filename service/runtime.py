"""onnxruntime sessions for a bundle's encoder and step decoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from service.bundle import (
    DECODER_INPUTS,
    DECODER_INPUTS_V1,
    DECODER_OUTPUTS,
    DECODER_OUTPUTS_V1,
    ENCODER_INPUTS,
    Manifest,
)
from service.decoding import EncodedBatch, StepOutput, TokenPenalty, Vocabulary
from service.encoder_graph import fuse_bidirectional, same_encoding
from service.shortlist import restrict_output

log = logging.getLogger(__name__)

PROVIDERS = ("cpu", "cuda", "auto")
_ORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ProviderError(RuntimeError):
    """The requested execution provider cannot be used."""


def resolve_provider(requested: str) -> str:
    """Map ``cpu | cuda | auto`` to the provider that will actually run."""
    if requested not in PROVIDERS:
        raise ProviderError(f"unknown provider {requested!r}: valid are {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if requested == "cpu":
        return "cpu"
    if _ORT_NAMES["cuda"] in available:
        return "cuda"
    if requested == "cuda":
        raise ProviderError(
            "provider 'cuda' requested but onnxruntime offers only "
            f"{', '.join(available)}; install the 'gpu' extra (onnxruntime-gpu) and a CUDA runtime"
        )
    log.warning("provider 'auto': CUDA is not available, falling back to CPU")
    return "cpu"


@dataclass(frozen=True)
class SessionOptions:
    provider: str = "cpu"  # already resolved: cpu | cuda
    intra_op_threads: int = 0  # 0 lets onnxruntime choose (one per core)
    allow_spinning: bool = False  # busy-wait between ops; slower for a step loop on few cores


class OnnxSeq2Seq:
    """Encoder + step decoder sessions; implements ``service.decoding.StepModel``.

    With ``shortlist``, a second decoder session scores only a step's candidates
    (:func:`service.shortlist.restrict_output`, derived from the same file): steps given a
    :class:`~service.decoding.Vocabulary` run it."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, variant: str,
                 options: SessionOptions, shortlist: bool = False) -> None:
        variant = manifest.resolve_variant(variant)
        files = manifest.variants[variant]
        self.variant = variant
        self.format_version = manifest.format_version
        self.provider = options.provider
        self.encoder, self.fused_encoder = self._encoder(bundle_dir / files["encoder"],
                                                         options, manifest.special_tokens.pad)
        self.decoder = self._session(bundle_dir / files["decoder"], options)
        self.restricted: ort.InferenceSession | None = None
        if shortlist and self.format_version >= 2:
            graph = restrict_output(onnx.load(str(bundle_dir / files["decoder"])))
            self.restricted = self._session(graph.SerializeToString(), options)

    @classmethod
    def _encoder(cls, path: Path, options: SessionOptions, pad: int
                 ) -> tuple[ort.InferenceSession, bool]:
        """The encoder, as one bidirectional GRU where the file has it as two
        (:mod:`service.encoder_graph`) and that gives the same numbers; and whether it is."""
        session = cls._session(path, options)
        model = onnx.load(str(path))
        fused = fuse_bidirectional(model)
        if fused is None:
            return session, False
        try:  # an optimization only: whatever fails here leaves the file's graph running
            faster = cls._session(fused.SerializeToString(), options)
            if same_encoding(session, faster, model, pad):
                return faster, True
            why = "gives other numbers on this machine"
        except Exception as exc:  # e.g. an execution provider without this GRU
            why = f"does not run here ({type(exc).__name__}: {exc})"
        log.warning("%s: the encoder as one bidirectional GRU %s; running the file's graph",
                    path, why)
        return session, False

    @staticmethod
    def _session(path: Path | bytes, options: SessionOptions) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning",
                                    "1" if options.allow_spinning else "0")
        providers = [_ORT_NAMES[options.provider]]
        if options.provider == "cuda":
            providers.append(_ORT_NAMES["cpu"])
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, sess_options=so, providers=providers)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> EncodedBatch:
        """:param src_ids: (B, S) int64 padded; src_lengths (B,) int64."""
        outputs, hidden, keys = self.encoder.run(
            None, dict(zip(ENCODER_INPUTS, (src_ids, src_lengths), strict=True)))
        mask = np.arange(src_ids.shape[1])[None, :] < src_lengths[:, None]  # (B, S)
        return EncodedBatch(outputs, hidden, keys, mask)

    def step(self, prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
             row_sentence: np.ndarray, top_k: int, penalty: TokenPenalty,
             vocab: Vocabulary | None = None, attention: bool = True) -> StepOutput:
        if self.format_version == 1:
            log_probs, next_hidden, weights = self._run_v1(prev_tokens, hidden, encoded,
                                                           row_sentence)
            return StepOutput.from_log_probs(log_probs, next_hidden,
                                             weights if attention else None, top_k, penalty,
                                             vocab)
        feeds = self._feeds(prev_tokens, hidden, encoded, row_sentence, penalty, top_k)
        session = self.decoder
        if vocab is not None:
            if self.restricted is None:
                raise ValueError("this model was loaded without a shortlist")
            session = self.restricted
            feeds.update(vocab_ids=vocab.ids, row_columns=vocab.columns,
                         penalty_columns=vocab.penalty_columns_of(penalty.token_ids))
        # Only what is fetched is copied out; attention is needed only where asked for.
        outputs = session.run(list(DECODER_OUTPUTS[: 4 if attention else 3]), feeds)
        top_log_probs, top_ids, next_hidden = outputs[:3]
        return StepOutput(top_log_probs, top_ids, next_hidden,
                          outputs[3] if attention else None)

    def step_log_probs(self, prev_tokens: np.ndarray, hidden: np.ndarray,
                       encoded: EncodedBatch, row_sentence: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.format_version == 1:
            return self._run_v1(prev_tokens, hidden, encoded, row_sentence)
        none = TokenPenalty.none(len(prev_tokens))
        log_probs, next_hidden, attention = self.decoder.run(
            ["log_probs", "next_hidden", "attention"],
            self._feeds(prev_tokens, hidden, encoded, row_sentence, none, 1))
        return log_probs, next_hidden, attention

    @staticmethod
    def _feeds(prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
               row_sentence: np.ndarray, penalty: TokenPenalty, top_k: int
               ) -> dict[str, np.ndarray]:
        values = (prev_tokens, hidden, encoded.outputs, encoded.keys, encoded.mask,
                  row_sentence, penalty.token_ids, penalty.values,
                  np.array([top_k], dtype=np.int64))
        return dict(zip(DECODER_INPUTS, values, strict=True))

    # Format 1 bundles: rows gathered, penalty added and top-k taken here, in numpy.
    def _run_v1(self, prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
                row_sentence: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = (prev_tokens, hidden, encoded.outputs[row_sentence],
                  encoded.keys[row_sentence], encoded.mask[row_sentence])
        log_probs, next_hidden, attention = self.decoder.run(
            list(DECODER_OUTPUTS_V1), dict(zip(DECODER_INPUTS_V1, values, strict=True)))
        return log_probs, next_hidden, attention

