"""The encoder-decoder: encode once, then step the decoder; tied embeddings throughout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model_export.model.decoder import Decoder
from model_export.model.encoder import Encoder
from model_export.step_module import StepModule
from model_export.tokenizer import BOS


@dataclass
class ModelConfig:
    vocab_size: int = 10000  # joint SentencePiece vocabulary (source and target)
    emb_dim: int = 256  # embedding and readout size; embeddings are tied three ways
    enc_hidden: int = 384  # per direction; encoder outputs are 2 * enc_hidden wide
    dec_hidden: int = 512  # decoder GRU state
    attn_dim: int = 256  # Bahdanau attention's hidden size (unused by Luong)
    attention: str = "bahdanau"  # bahdanau | luong-general | luong-dot
    dropout: float = 0.2  # on embeddings, encoder outputs and the readout
    pad_id: int = 0


class Seq2Seq(StepModule):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.pad_id, self.bos_id, self.src_vocab_size = config.pad_id, BOS, config.vocab_size
        self.embed = nn.Embedding(config.vocab_size, config.emb_dim, padding_idx=config.pad_id)
        self.encoder = Encoder(config.emb_dim, config.enc_hidden, config.dropout)
        self.decoder = Decoder(
            emb_dim=config.emb_dim,
            enc_dim=2 * config.enc_hidden,
            hidden=config.dec_hidden,
            attn_dim=config.attn_dim,
            attention=config.attention,
            dropout=config.dropout,
        )
        self.embed_dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.embed.weight, std=config.emb_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[config.pad_id].zero_()

    def encode(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (encoder_outputs (B, S, 2He), decoder_init (B, Hd), keys (B, S, K)).

        :param src_ids: (B, S) int64, padded with pad_id
        :param src_lengths: (B,) int64
        """
        embedded = self.embed_dropout(self.embed(src_ids))  # (B, S, E)
        outputs, final = self.encoder(embedded, src_lengths)
        keys = self.decoder.attention.project_keys(outputs)
        return outputs, self.decoder.init_state(final), keys

    def generate_log_probs(self, readout: torch.Tensor) -> torch.Tensor:
        """:param readout: (..., E) -> log-probabilities (..., V) via the tied embeddings."""
        # Tied output layer. Note: the exported fp32 decoder still stores this matrix twice
        # (Gather table + output projection), 6 MB that int8 shrinks; not yet deduplicated.
        return torch.log_softmax(F.linear(readout, self.embed.weight), dim=-1)

    def decode_step(
        self,
        prev_tokens: torch.Tensor,
        hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: (log_probs (B, V), next hidden (B, Hd), attention (B, S)). Exported."""
        prev = self.embed_dropout(self.embed(prev_tokens))  # (B, E)
        readout, hidden, weights = self.decoder.step(prev, hidden, encoder_outputs, keys, src_mask)
        return self.generate_log_probs(readout), hidden, weights

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced log-probs (B, T, V) for target inputs ``tgt_in`` (B, T)."""
        outputs, hidden, keys = self.encode(src_ids, src_lengths)
        src_mask = src_ids != self.config.pad_id  # (B, S)
        embedded = self.embed_dropout(self.embed(tgt_in))  # (B, T, E)
        readouts = []
        for t in range(tgt_in.size(1)):
            readout, hidden, _ = self.decoder.step(embedded[:, t], hidden, outputs, keys, src_mask)
            readouts.append(readout)
        # One large projection for all steps is much faster than one per step.
        return self.generate_log_probs(torch.stack(readouts, dim=1))  # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
