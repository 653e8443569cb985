"""A tiny deterministic step model in numpy, with the same row-independence as the real one."""

import numpy as np

from service.decoding import EncodedBatch, StepOutput, TokenPenalty, Vocabulary


class ToyModel:
    def __init__(self, vocab: int = 6, hidden: int = 6, dim: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vocab, self.hidden_size, self.dim = vocab, hidden, dim
        self.embed = rng.normal(size=(vocab, hidden))
        self.w_h = rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)
        self.w_c = rng.normal(size=(dim, hidden))
        self.out = rng.normal(size=(hidden, vocab)) * 2.0

    def encode(self, lengths: list[int], seed: int = 1) -> EncodedBatch:
        rng = np.random.default_rng(seed)
        B, S = len(lengths), max(lengths)
        mask = np.arange(S)[None, :] < np.array(lengths)[:, None]
        return EncodedBatch(
            outputs=rng.normal(size=(B, S, self.dim)).astype(np.float32),
            hidden=rng.normal(size=(B, self.hidden_size)).astype(np.float32),
            keys=rng.normal(size=(B, S, self.hidden_size)).astype(np.float32),
            mask=mask,
        )

    def step_log_probs(self, prev_tokens: np.ndarray, hidden: np.ndarray,
                       encoded: EncodedBatch, rows: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = np.einsum("nsh,nh->ns", encoded.keys[rows], hidden)
        scores = np.where(encoded.mask[rows], scores, -np.inf)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        context = np.einsum("ns,nsd->nd", attention, encoded.outputs[rows])
        hidden = np.tanh(hidden @ self.w_h + self.embed[prev_tokens] + context @ self.w_c)
        logits = hidden @ self.out
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return log_probs.astype(np.float32), hidden.astype(np.float32), attention.astype(np.float32)

    def step(self, prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
             rows: np.ndarray, top_k: int, penalty: TokenPenalty,
             vocab: Vocabulary | None = None, attention: bool = True) -> StepOutput:
        log_probs, hidden, weights = self.step_log_probs(prev_tokens, hidden, encoded, rows)
        return StepOutput.from_log_probs(log_probs, hidden, weights if attention else None,
                                         top_k, penalty, vocab)
