"""Search over a step decoder, in numpy: nothing here knows FastAPI, ONNX or PyTorch."""

from service.decoding.beam import length_penalty
from service.decoding.engine import Engine, Search, beam_search, greedy_search
from service.decoding.forced import forced_log_probs
from service.decoding.types import (
    EncodedBatch,
    Hypothesis,
    StepModel,
    StepOutput,
    TokenPenalty,
    max_lengths,
)
from service.decoding.vocabulary import Vocabulary, VocabularyBuilder

__all__ = [
    "EncodedBatch",
    "Engine",
    "Hypothesis",
    "Search",
    "StepModel",
    "StepOutput",
    "TokenPenalty",
    "Vocabulary",
    "VocabularyBuilder",
    "beam_search",
    "forced_log_probs",
    "greedy_search",
    "length_penalty",
    "max_lengths",
]
