"""onnxruntime sessions for a bundle's encoder and step decoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.bundle import DECODER_INPUTS, ENCODER_INPUTS, Manifest
from service.decoding import EncodedBatch

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
    """Encoder + step decoder sessions; implements ``service.decoding.StepModel``."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, variant: str,
                 options: SessionOptions) -> None:
        variant = manifest.resolve_variant(variant)
        files = manifest.variants[variant]
        self.variant = variant
        self.provider = options.provider
        self.encoder = self._session(bundle_dir / files["encoder"], options)
        self.decoder = self._session(bundle_dir / files["decoder"], options)

    @staticmethod
    def _session(path: Path, options: SessionOptions) -> ort.InferenceSession:
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
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> EncodedBatch:
        """:param src_ids: (B, S) int64 padded; src_lengths (B,) int64."""
        outputs, hidden, keys = self.encoder.run(
            None, dict(zip(ENCODER_INPUTS, (src_ids, src_lengths), strict=True)))
        mask = np.arange(src_ids.shape[1])[None, :] < src_lengths[:, None]  # (B, S)
        return EncodedBatch(outputs, hidden, keys, mask)

    def step(self, prev_tokens: np.ndarray, hidden: np.ndarray,
             encoded: EncodedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inputs = (prev_tokens, hidden, encoded.outputs, encoded.keys, encoded.mask)
        log_probs, next_hidden, attention = self.decoder.run(
            None, dict(zip(DECODER_INPUTS, inputs, strict=True)))
        return log_probs, next_hidden, attention
