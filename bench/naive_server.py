"""Baseline 1: the server a user would write from the PyTorch tutorial.

FastAPI + the PyTorch model in eager mode under ``torch.inference_mode``, one request at a
time (a lock around the model), same thread count as our service. It reuses our masking,
tokenizer and search code over a PyTorch step function, so the comparison isolates serving
(eager PyTorch, no batching) from everything else.

    python -m bench.naive_server --run work/run-en-de-lo --port 8100
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from model_export.model import Seq2Seq
from model_export.train import load_model
from service.decoding import (
    EncodedBatch,
    StepOutput,
    TokenPenalty,
    Vocabulary,
    beam_search,
    greedy_search,
    max_lengths,
)
from service.placeholders import mask, unmask

BOS, EOS, PAD = 2, 3, 0


class Request(BaseModel):
    text: str
    beam_size: int = 4


class TorchStep:
    def __init__(self, model: Seq2Seq) -> None:
        self.model = model

    def step_log_probs(self, prev: np.ndarray, hidden: np.ndarray, enc: EncodedBatch,
                       rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.model.decode_step(
            torch.from_numpy(prev), torch.from_numpy(hidden), torch.from_numpy(enc.outputs[rows]),
            torch.from_numpy(enc.keys[rows]), torch.from_numpy(enc.mask[rows]))
        log_probs, next_hidden, attention = (t.numpy() for t in out)
        return log_probs, next_hidden, attention

    def step(self, prev: np.ndarray, hidden: np.ndarray, enc: EncodedBatch, rows: np.ndarray,
             top_k: int, penalty: TokenPenalty, vocab: Vocabulary | None = None,
             attention: bool = True) -> StepOutput:
        return StepOutput.from_log_probs(*self.step_log_probs(prev, hidden, enc, rows), top_k,
                                         penalty, vocab)


def create_app(run_dir: Path, threads: int) -> FastAPI:
    torch.set_num_threads(threads)
    model, sp = load_model(run_dir)
    step = TorchStep(model)
    lock = threading.Lock()
    app = FastAPI()
    stats = {"requests": 0, "tokens_out": 0}

    @app.post("/translate")
    def translate(body: Request) -> dict[str, object]:
        masked = mask(body.text)
        ids = sp.encode(masked.text) + [EOS]
        with lock, torch.inference_mode():
            src = torch.tensor([ids])
            outputs, hidden, keys = model.encode(src, torch.tensor([len(ids)]))
            enc = EncodedBatch(outputs.numpy(), hidden.numpy(), keys.numpy(),
                               np.ones((1, len(ids)), dtype=bool))
            limit = max_lengths(np.array([len(ids)]), 2.0, 512)
            if body.beam_size == 1:
                hyp = greedy_search(step, enc, BOS, EOS, limit)[0]
            else:
                hyp = beam_search(step, enc, BOS, EOS, limit, beam_size=body.beam_size)[0][0]
        stats["requests"] += 1
        stats["tokens_out"] += len(hyp.tokens) + 1
        return {"translation": unmask(sp.decode(hyp.tokens), masked.placeholders)}

    @app.get("/stats")
    def get_stats() -> dict[str, int]:
        return stats

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=Path("work/run-en-de-lo"))
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(create_app(args.run, args.threads), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
