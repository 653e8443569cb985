"""GRU decoder with attention; one step is a stateless function of its inputs."""

from __future__ import annotations

import torch
from torch import nn

from model_export.model.attention import build_attention


class Decoder(nn.Module):
    """Input-feeding GRU decoder (Bahdanau et al., 2015, sec. 3.1 and A.2.2).

    The previous state s_{t-1} queries the attention; the context and the previous token's
    embedding feed the GRU; a maxout-free readout tanh(W [s_t; c_t; y_{t-1}]) is scored
    against the (tied) embedding matrix.
    """

    def __init__(
        self,
        emb_dim: int,
        enc_dim: int,
        hidden: int,
        attn_dim: int,
        attention: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.attention = build_attention(attention, hidden, enc_dim, attn_dim)
        self.init_proj = nn.Linear(enc_dim, hidden)
        self.cell = nn.GRUCell(emb_dim + enc_dim, hidden)
        self.readout = nn.Linear(hidden + enc_dim + emb_dim, emb_dim)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, encoder_final: torch.Tensor) -> torch.Tensor:
        """:param encoder_final: (B, 2He) -> s_0 (B, Hd)."""
        return torch.tanh(self.init_proj(encoder_final))

    def step(
        self,
        prev_embedded: torch.Tensor,
        hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step. Returns (readout (B, E), next hidden (B, Hd), attention (B, S)).

        :param prev_embedded: (B, E) embedding of the previous target token
        :param hidden: (B, Hd) s_{t-1}
        :param encoder_outputs: (B, S, 2He)
        :param keys: (B, S, K) from ``attention.project_keys``
        :param src_mask: (B, S) bool
        """
        context, weights = self.attention(hidden, keys, encoder_outputs, src_mask)  # (B, 2He)
        hidden = self.cell(torch.cat([prev_embedded, context], dim=-1), hidden)  # (B, Hd)
        readout = torch.tanh(self.readout(torch.cat([hidden, context, prev_embedded], dim=-1)))
        return self.dropout(readout), hidden, weights
