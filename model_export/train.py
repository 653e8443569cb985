"""Training loop: label-smoothed NLL, Adam, dev BLEU per evaluation, LR decay, early stopping.

A run directory holds ``spm.model``, ``config.json``, ``checkpoint.pt`` (latest, for
resuming, also mid-epoch) and ``best.pt`` (best dev BLEU), plus ``log.jsonl`` with one line
per evaluation (every ``eval_every`` updates and at each epoch end).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from torch import nn
from tqdm import tqdm

from model_export.corpus import DEV_SENTENCES, Pair, load_split, sample
from model_export.data import encode_pairs, mask_pair, pad, token_batches
from model_export.metrics import Scores, score
from model_export.model import ModelConfig, Seq2Seq
from model_export.tokenizer import EOS, PAD, load_tokenizer, train_tokenizer
from service.decoding import max_lengths
from service.placeholders import mask, unmask

log = logging.getLogger(__name__)
KEEP_SNAPSHOTS = 5


@dataclass
class TrainConfig:
    data_dir: Path  # holds train.tsv / dev.tsv / test.tsv from the corpus step
    run_dir: Path  # checkpoints, tokenizer, logs
    model: ModelConfig = field(default_factory=ModelConfig)
    max_epochs: int = 40
    time_budget_min: float = 0.0  # stop at the evaluation that crosses it; 0 = no budget
    eval_every: int = 0  # also validate and checkpoint every N updates (0: at epoch ends)
    batch_tokens: int = 2500  # padded tokens (max of source/target width x sentences)
    lr: float = 2e-3
    lr_decay: float = 0.5  # multiply the LR by this when dev BLEU does not improve
    min_lr: float = 1e-4
    patience: int = 4  # epochs without dev BLEU improvement before stopping
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    max_tokens: int = 100  # longer training pairs are dropped
    dev_limit: int = 0  # evaluate on the first N dev pairs only (0 = all)
    max_steps: int = 0  # stop after N updates (tests); 0 = no limit
    restart_lr: float = 0.0  # on resume: warm restart at this LR, patience reset (0 = off)
    # Fine-tuning: start from this run's final weights and tokenizer instead of from scratch,
    init_from: Path | None = None
    # with these TSV files' pairs added to train.tsv, each the given number of extra times.
    oversample: dict[str, int] = field(default_factory=dict)
    # Ablation: these TSV files' pairs are taken out of train.tsv (e.g. a corpus source's
    # train-dictionary.tsv), so the run learns without that source.
    exclude: list[str] = field(default_factory=list)
    seed: int = 1
    threads: int = 2


def translate_greedy(
    model: Seq2Seq,
    sp: spm.SentencePieceProcessor,
    sources: Sequence[str],
    batch_size: int = 64,
    max_ratio: float = 2.0,
    max_target_tokens: int = 512,
) -> list[str]:
    """Mask, tokenize, greedy-decode in PyTorch and restore placeholders.

    Length limits are the service's (``service.decoding.max_lengths``), so outputs compare.
    """
    model.eval()
    masked = [mask(s) for s in sources]
    ids = [sp.encode(m.text) + [EOS] for m in masked]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad([ids[i] for i in chunk])
        lengths = torch.tensor([len(ids[i]) for i in chunk])
        limit = torch.from_numpy(max_lengths(lengths.numpy(), max_ratio, max_target_tokens))
        for i, toks in zip(chunk, model.greedy(src, lengths, EOS, limit), strict=True):
            out[i] = unmask(sp.decode(toks), masked[i].placeholders)
    return out


def evaluate_greedy(
    model: Seq2Seq, sp: spm.SentencePieceProcessor, pairs: Sequence[Pair]
) -> Scores:
    sources = [s for s, _ in pairs]
    return score(sources, translate_greedy(model, sp, sources), [t for _, t in pairs])


class LabelSmoothedNLL(nn.Module):
    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed loss over non-pad tokens. :param log_probs: (B, T, V), target (B, T)."""
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
        smooth = -log_probs.mean(-1)  # (B, T)
        loss = (1 - self.smoothing) * nll + self.smoothing * smooth
        return loss.masked_fill(target == PAD, 0.0).sum()


def prepare_tokenizer(cfg: TrainConfig, train_pairs: Sequence[Pair]) -> spm.SentencePieceProcessor:
    path = cfg.run_dir / "spm.model"
    if not path.exists():
        texts = [t for pair in train_pairs for t in mask_pair(*pair)]
        train_tokenizer(texts, path, cfg.model.vocab_size)
    return load_tokenizer(path)


def train(cfg: TrainConfig, resume: bool = True) -> dict[str, Any]:
    """Train (or resume) a model in ``cfg.run_dir``; returns the final training summary."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    train_pairs = load_split(cfg.data_dir / "train.tsv")
    for name in cfg.exclude:
        left_out = set(load_split(cfg.data_dir / name))
        kept = [pair for pair in train_pairs if pair not in left_out]
        log.info("--exclude %s: %d training pairs left out", name, len(train_pairs) - len(kept))
        train_pairs = kept
    for name, times in cfg.oversample.items():
        train_pairs += load_split(cfg.data_dir / name) * times
    dev_pairs = load_split(cfg.data_dir / "dev.tsv")
    if cfg.dev_limit:
        dev_pairs = dev_pairs[: cfg.dev_limit]
    if cfg.init_from and not (cfg.run_dir / "spm.model").exists():
        shutil.copy(cfg.init_from / "spm.model", cfg.run_dir / "spm.model")
    sp = prepare_tokenizer(cfg, train_pairs)
    if sp.get_piece_size() != cfg.model.vocab_size:
        log.warning("tokenizer has %d pieces, not %d: the model follows the tokenizer",
                    sp.get_piece_size(), cfg.model.vocab_size)
        cfg.model.vocab_size = sp.get_piece_size()
    examples = encode_pairs(train_pairs, sp, cfg.max_tokens)
    log.info("training on %d of %d pairs", len(examples), len(train_pairs))

    model = Seq2Seq(cfg.model)
    if cfg.init_from:
        saved = torch.load(final_weights(cfg.init_from), weights_only=False)
        if ModelConfig(**saved["config"]) != cfg.model:
            raise ValueError(f"--init-from {cfg.init_from}: its model is {saved['config']}, "
                             f"not {asdict(cfg.model)}")
        model.load_state_dict(saved["model"])
        log.info("fine-tuning %s", final_weights(cfg.init_from))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_bleu": -1.0, "bad_epochs": 0,
                             "train_seconds": 0.0, "history": []}
    checkpoint = cfg.run_dir / "checkpoint.pt"
    if resume and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        torch.set_rng_state(saved["torch_rng"])
        log.info("resumed from epoch %d (best dev BLEU %.2f)", state["epoch"], state["best_bleu"])
        if cfg.restart_lr:  # warm restart (Loshchilov & Hutter, 2017): new LR, patience reset
            for group in optimizer.param_groups:
                group["lr"] = cfg.restart_lr
            state["bad_epochs"] = 0
    (cfg.run_dir / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))
    log.info("model: %s, %d parameters", cfg.model.attention, model.num_parameters())

    criterion = LabelSmoothedNLL(cfg.label_smoothing)
    run = _Run(cfg, model, optimizer, sp, dev_pairs, state)
    while state["epoch"] < cfg.max_epochs:
        if cfg.max_steps and state["step"] >= cfg.max_steps:  # resumed at its end
            break
        # The batch order is a function of the seed and the epoch, so a run resumed from a
        # mid-epoch checkpoint continues with exactly the batches it had not seen.
        rng = random.Random(cfg.seed * 100_003 + state["epoch"])
        batches = list(token_batches(examples, cfg.batch_tokens, rng))
        start = state.setdefault("batch_index", 0)
        bar = tqdm(batches[start:], desc=f"epoch {state['epoch'] + 1}", unit="batch",
                   leave=False)
        stop = False
        for batch in bar:
            model.train()
            log_probs = model(batch.src, batch.src_lengths, batch.tgt_in)
            tokens = batch.num_target_tokens
            loss = criterion(log_probs, batch.tgt_out)
            optimizer.zero_grad()
            (loss / tokens).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            optimizer.step()
            run.add(loss.item(), tokens)
            state["step"] += 1
            state["batch_index"] += 1
            bar.set_postfix(loss=f"{run.loss:.3f}")
            if state["batch_index"] == len(batches):
                break
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                run.validate()
                stop = True
                break
            if cfg.eval_every and state["step"] % cfg.eval_every == 0 and run.validate():
                stop = True
                break
        if state["batch_index"] == len(batches):
            state["epoch"] += 1
            state["batch_index"] = 0
            stop = run.validate() or bool(cfg.max_steps and state["step"] >= cfg.max_steps)
        if stop:
            break
    summary = {k: state[k] for k in ("epoch", "step", "best_bleu", "train_seconds", "history")}
    (cfg.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class _Run:
    """Validation and checkpointing of a training run, at epoch ends and every
    ``eval_every`` steps: dev BLEU, best model, LR decay on a plateau, checkpoints to resume
    from, snapshots to average, the log, early stopping and the time budget."""

    def __init__(self, cfg: TrainConfig, model: Seq2Seq, optimizer: torch.optim.Optimizer,
                 sp: spm.SentencePieceProcessor, dev_pairs: Sequence[Pair],
                 state: dict[str, Any]) -> None:
        self.cfg, self.model, self.optimizer, self.sp = cfg, model, optimizer, sp
        self.dev_pairs, self.state = dev_pairs, state
        self.total_loss, self.total_tokens = 0.0, 0
        self.started = time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.total_loss += loss
        self.total_tokens += tokens

    @property
    def loss(self) -> float:
        return self.total_loss / max(self.total_tokens, 1)

    def validate(self) -> bool:
        """Evaluate and checkpoint; True when training should stop."""
        cfg, state = self.cfg, self.state
        state["train_seconds"] += time.perf_counter() - self.started
        dev = evaluate_greedy(self.model, self.sp, self.dev_pairs)
        record = {"epoch": state["epoch"], "step": state["step"], "loss": self.loss,
                  "lr": self.optimizer.param_groups[0]["lr"], "dev_bleu": round(dev.bleu, 2),
                  "dev_chrf": round(dev.chrf, 2),
                  "seconds": round(time.perf_counter() - self.started, 1)}
        state["history"].append(record)
        log.info("epoch %(epoch)d step %(step)d loss %(loss).3f lr %(lr).2e dev BLEU "
                 "%(dev_bleu).2f chrF %(dev_chrf).2f (%(seconds).0fs)", record)
        if dev.bleu > state["best_bleu"]:
            state["best_bleu"], state["bad_epochs"] = dev.bleu, 0
            torch.save({"model": self.model.state_dict(), "config": asdict(cfg.model)},
                       cfg.run_dir / "best.pt")
        else:
            state["bad_epochs"] += 1
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * cfg.lr_decay, cfg.min_lr)
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "state": state, "torch_rng": torch.get_rng_state()},
                   cfg.run_dir / "checkpoint.pt")
        snapshots = cfg.run_dir / "epochs"  # for checkpoint averaging; the last few only
        snapshots.mkdir(exist_ok=True)
        torch.save(self.model.state_dict(), snapshots / f"{state['step']:07d}.pt")
        for old in sorted(snapshots.glob("*.pt"))[:-KEEP_SNAPSHOTS]:
            old.unlink()
        with (cfg.run_dir / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.total_loss, self.total_tokens = 0.0, 0
        self.started = time.perf_counter()
        if state["bad_epochs"] >= cfg.patience:
            log.info("early stop: no dev improvement in %d evaluations", cfg.patience)
            return True
        return bool(cfg.time_budget_min and state["train_seconds"] > 60 * cfg.time_budget_min)


def final_weights(run_dir: Path) -> Path:
    """The run's final model: ``final.pt`` if chosen, else ``best.pt``."""
    return run_dir / "final.pt" if (run_dir / "final.pt").exists() else run_dir / "best.pt"


def load_model(run_dir: Path) -> tuple[Seq2Seq, spm.SentencePieceProcessor]:
    """The run's final model (see :func:`final_weights`), in eval mode."""
    saved = torch.load(final_weights(run_dir), weights_only=False)
    model = Seq2Seq(ModelConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    return model.eval(), load_tokenizer(run_dir / "spm.model")


def choose_final(run_dir: Path, data_dir: Path, average: int) -> dict[str, float]:
    """Write ``final.pt``: the best-dev checkpoint or the average of the last ``average``
    epoch snapshots (Vaswani et al., 2017, sec. 6.1), whichever has the higher dev BLEU."""
    best = torch.load(run_dir / "best.pt", weights_only=False)
    snapshots = sorted((run_dir / "epochs").glob("*.pt"))[-average:]
    dev = sample(load_split(data_dir / "dev.tsv"), DEV_SENTENCES)
    sp = load_tokenizer(run_dir / "spm.model")
    candidates = {"best": best["model"]}
    if len(snapshots) >= 2:
        states = [torch.load(p, weights_only=True) for p in snapshots]
        candidates[f"average of {len(states)}"] = {
            k: sum(s[k].float() for s in states) / len(states) for k in states[0]}
    scores = {}
    for name, weights in candidates.items():
        model = Seq2Seq(ModelConfig(**best["config"]))
        model.load_state_dict(weights)
        scores[name] = evaluate_greedy(model.eval(), sp, dev).bleu
    winner = max(scores, key=lambda k: scores[k])
    log.info("dev BLEU %s: using %s", scores, winner)
    torch.save({"model": candidates[winner], "config": best["config"], "chosen": winner},
               run_dir / "final.pt")
    return scores
