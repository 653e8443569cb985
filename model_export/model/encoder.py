"""Bidirectional GRU encoder that exports to ONNX without ``pack_padded_sequence``."""

from __future__ import annotations

import torch
from torch import nn


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length; padding stays at the end.

    :param x: (B, S, D)
    :param lengths: (B,) int64
    Applying it twice gives back ``x``.
    """
    B, S, D = x.shape
    t = torch.arange(S, device=x.device).unsqueeze(0)  # (1, S)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    index = torch.where(t <= last, last - t, t)  # (B, S)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(B, S, D))


class Encoder(nn.Module):
    """Bi-GRU over embedded source tokens (Bahdanau et al., 2015, sec. 3.2).

    The backward direction runs a forward GRU over each sequence reversed within its length,
    so padding never reaches a real position in either direction and no packing is needed.
    """

    def __init__(self, emb_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.forward_rnn = nn.GRU(emb_dim, hidden, batch_first=True)
        self.backward_rnn = nn.GRU(emb_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, embedded: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (outputs (B, S, 2H), final (B, 2H) = [last forward; first backward]).

        :param embedded: (B, S, E)
        :param lengths: (B,) int64, every length >= 1
        """
        # An explicit h0 keeps the batch axis dynamic in the exported ONNX GRU.
        h0 = embedded.new_zeros(1, embedded.size(0), self.forward_rnn.hidden_size)
        fwd, _ = self.forward_rnn(embedded, h0)  # (B, S, H)
        bwd_rev, _ = self.backward_rnn(reverse_padded(embedded, lengths), h0)  # (B, S, H)
        bwd = reverse_padded(bwd_rev, lengths)
        B, _, H = fwd.shape
        last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)
        final = torch.cat([fwd.gather(1, last).squeeze(1), bwd[:, 0]], dim=-1)  # (B, 2H)
        return self.dropout(torch.cat([fwd, bwd], dim=-1)), final
