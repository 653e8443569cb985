"""The GRU encoder-decoder with attention (the only torch user besides train/export)."""

from model_export.model.seq2seq import ModelConfig, Seq2Seq

__all__ = ["ModelConfig", "Seq2Seq"]
