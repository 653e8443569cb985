"""Attention mechanisms: score encoder states (keys) against a decoder state (query).

Keys are projected once per sentence by :meth:`Attention.project_keys` and passed to every
step explicitly, so the exported decoder step has no hidden cached state.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTIONS = ("bahdanau", "luong-general", "luong-dot")


class Attention(nn.Module):
    """Base class: masked softmax over scores, then a weighted sum of the values."""

    def project_keys(self, encoder_outputs: torch.Tensor) -> torch.Tensor:
        """:param encoder_outputs: (B, S, D) -> keys (B, S, K)."""
        raise NotImplementedError

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """:param query: (B, Hd), keys (B, S, K) -> unnormalized scores (B, S)."""
        raise NotImplementedError

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (context (B, D), weights (B, S)); weights are 0 where ``src_mask`` is False.

        :param query: (B, Hd) decoder state
        :param keys: (B, S, K) projected encoder states
        :param values: (B, S, D) encoder states
        :param src_mask: (B, S) bool, True on real tokens
        """
        scores = self.score(query, keys)  # (B, S)
        scores = scores.masked_fill(~src_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (B, D)
        return context, weights


class BahdanauAttention(Attention):
    """Additive attention (Bahdanau et al., 2015, sec. A.1.2): v^T tanh(W q + U h_j)."""

    def __init__(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(value_dim, attn_dim, bias=False)  # U
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)  # W
        self.energy = nn.Linear(attn_dim, 1, bias=False)  # v

    def project_keys(self, encoder_outputs: torch.Tensor) -> torch.Tensor:
        return self.key_proj(encoder_outputs)  # (B, S, A)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        q = self.query_proj(query).unsqueeze(1)  # (B, 1, A)
        return self.energy(torch.tanh(q + keys)).squeeze(-1)  # (B, S)


class LuongAttention(Attention):
    """Multiplicative attention (Luong et al., 2015, sec. 3.1): ``dot`` q^T h_j or
    ``general`` q^T W h_j (W h_j precomputed as the key)."""

    def __init__(self, query_dim: int, value_dim: int, kind: str) -> None:
        super().__init__()
        if kind == "dot" and query_dim != value_dim:
            raise ValueError(
                f"luong-dot needs decoder hidden ({query_dim}) == encoder output size "
                f"({value_dim}); use luong-general"
            )
        self.key_proj = nn.Linear(value_dim, query_dim, bias=False) if kind == "general" else None

    def project_keys(self, encoder_outputs: torch.Tensor) -> torch.Tensor:
        if self.key_proj is None:
            return encoder_outputs
        return self.key_proj(encoder_outputs)  # (B, S, Hd)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)


def build_attention(kind: str, query_dim: int, value_dim: int, attn_dim: int) -> Attention:
    if kind == "bahdanau":
        return BahdanauAttention(query_dim, value_dim, attn_dim)
    if kind in ("luong-general", "luong-dot"):
        return LuongAttention(query_dim, value_dim, kind.removeprefix("luong-"))
    raise ValueError(f"unknown attention {kind!r}: valid are {', '.join(ATTENTIONS)}")
