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

    @torch.inference_mode()
    def greedy(self, src_ids: torch.Tensor, src_lengths: torch.Tensor, eos: int,
               max_len: torch.Tensor) -> list[list[int]]:
        """Batched greedy decoding in PyTorch (no ONNX, no constraint): the reference the
        exported graphs are compared with. Returns token ids without BOS/EOS.

        :param max_len: (B,) steps allowed per sentence, EOS included
        """
        outputs, hidden, keys = self.encode(src_ids, src_lengths)
        src_mask = torch.arange(src_ids.size(1))[None, :] < src_lengths[:, None]
        B = src_ids.size(0)
        tokens = torch.full((B,), self.bos_id, dtype=torch.long)
        running = torch.ones(B, dtype=torch.bool)
        result: list[list[int]] = [[] for _ in range(B)]
        for step in range(int(max_len.max())):
            log_probs, hidden, _ = self.decode_step(tokens, hidden, outputs, keys, src_mask)
            tokens = log_probs.argmax(-1)
            running &= tokens != eos
            for i in torch.nonzero(running).flatten().tolist():
                result[i].append(int(tokens[i]))
            running &= max_len > step + 1
            if not bool(running.any()):
                break
        return result
