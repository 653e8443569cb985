"""The graph contract in PyTorch: what a model must expose to be exported and served.

Any attention encoder-decoder can be served once it is wrapped as a :class:`StepModule`:

- ``encode(src_ids (B, S) int64, src_lengths (B,) int64)`` returns
  ``encoder_outputs (B, S, D)`` (the values attention mixes), ``decoder_init (B, H)`` (the
  decoder's initial recurrent state, flattened into one vector per sentence: several layers,
  LSTM cells, an input-feed vector all fit) and ``attention_keys (B, S, K)`` (whatever each
  step scores its query against, computed once per sentence; may be ``encoder_outputs``);
- ``decode_step(prev_tokens (R,), hidden (R, H), encoder_outputs (R, S, D),
  attention_keys (R, S, K), src_mask (R, S) bool)`` returns ``log_probs (R, V)``
  (log-softmax over the target vocabulary), ``next_hidden (R, H)`` and
  ``attention (R, S)`` (weights over the source, 0 on padding).

Every row must be computed from that row's inputs alone (no batch statistics), padding
positions must not change the real ones, and ``hidden`` is opaque to the service: it batches
and reorders rows of it and never looks inside. The exporter traces both methods to ONNX
(:mod:`model_export.export`), checks them against PyTorch and appends the service's
gather/penalty/top-k plumbing; :func:`model_export.adapter.bundle_module` writes the
bundle.
"""

from __future__ import annotations

import torch
from torch import nn


class StepModule(nn.Module):
    """Base class of exportable models; set the three ids in ``__init__``."""

    pad_id: int  # source padding id
    bos_id: int  # the decoder's first input token
    src_vocab_size: int  # source ids are < this

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode_step(self, prev_tokens: torch.Tensor, hidden: torch.Tensor,
                    encoder_outputs: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError
