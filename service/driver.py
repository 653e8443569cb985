"""Continuous batching: a scheduler's sentences through one engine, a cycle at a time.

One cycle drops the running sentences of withdrawn jobs, admits what the scheduler lets
join (encoder run, then into the engine), and runs one decoder step, reporting what finished
or failed. A sentence decoded model first keeps the best candidates that hold its glossary
terms; where too few do, it goes back to the queue with its terms enforced
(:meth:`Translator.prepare`) instead of finishing. The service's decode thread
(:mod:`service.batcher`) runs cycles forever, with a lock it shares with the event loop
around every scheduler call; offline evaluation and the parity checks run them until the
queue is empty (:meth:`Driver.run`). Both decode through this one loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.scheduler import Scheduler, Sentence, Status

if TYPE_CHECKING:
    import threading

    from service.decoding import Engine
    from service.translator import Candidate, DecodeOptions, Prepared, Translator

log = logging.getLogger(__name__)

Work = Sentence["Prepared", "DecodeOptions"]


@dataclass
class Cycle:
    """What one cycle did."""

    dropped: list[Work] = field(default_factory=list)
    admitted: list[Work] = field(default_factory=list)
    admitted_at: float = 0.0
    encode_seconds: float = 0.0
    rows: int = 0  # sentences in the decoder step (0: no step)
    finished: list[tuple[Work, list[Candidate]]] = field(default_factory=list)
    redone: int = 0  # model-first sentences sent back to be decoded with their terms enforced
    failed: list[Work] = field(default_factory=list)
    error: Exception | None = None  # why the sentences in ``failed`` failed
    idle: bool = False  # nothing queued, running or to drop: wait for new work


class Driver:
    def __init__(self, translator: Translator, scheduler: Scheduler[Prepared, DecodeOptions],
                 engine: Engine, lock: threading.Lock | None = None) -> None:
        self.translator = translator
        self.scheduler = scheduler
        self.engine = engine
        self.lock: contextlib.AbstractContextManager[object] = lock or contextlib.nullcontext()
        self._running: dict[int, Work] = {}  # engine id -> sentence

    def cycle(self) -> Cycle:
        c = Cycle()
        with self.lock:
            c.dropped = self.scheduler.take_withdrawn()
            c.admitted_at = time.perf_counter()
            c.admitted = self.scheduler.admit(c.admitted_at)
            c.idle = self.scheduler.idle and not c.dropped and not len(self.engine)
        if c.dropped:
            self._drop(c.dropped)
        if c.admitted:
            self._admit(c)
        if len(self.engine):
            self._step(c)
        return c

    def run(self) -> Iterator[tuple[Work, list[Candidate]]]:
        """Cycle until nothing is queued or running, yielding each finished sentence;
        raise the first failure."""
        while True:
            c = self.cycle()
            if c.error is not None:
                raise c.error
            yield from c.finished
            if c.idle:
                return

    def _drop(self, sentences: list[Work]) -> None:
        ids = [s.engine_id for s in sentences if s.engine_id is not None]
        self.engine.drop(ids)
        for sid in ids:
            self._running.pop(sid, None)
        with self.lock:
            for s in sentences:
                self.scheduler.finished(s, Status.DROPPED, "withdrawn")

    def _admit(self, c: Cycle) -> None:
        rows = [s.data for s in c.admitted]
        started = time.perf_counter()
        try:
            runs = self.translator.encode_runs(rows)
            searches = [self.translator.search(s.data, s.job.options, s.again is not None)
                        for s in c.admitted]
            ids = [0] * len(rows)
            for at, encoded in runs:  # the engine's store takes each run's rows where free
                admitted = self.engine.admit(encoded, [searches[i] for i in at])
                for i, sid in zip(at, admitted, strict=True):
                    ids[i] = sid
        except Exception as exc:
            log.exception("encoding %d sentences failed", len(rows))
            self._fail(c, c.admitted, exc)
            return
        c.encode_seconds = time.perf_counter() - started
        for sid, s in zip(ids, c.admitted, strict=True):
            s.engine_id = sid
            self._running[sid] = s
        running = len(self.engine)
        for job in {s.job for s in c.admitted}:
            job.encode_seconds += c.encode_seconds
            job.batch_sentences = job.batch_sentences or running

    def _step(self, c: Cycle) -> None:
        c.rows = len(self.engine)
        try:
            finished = self.engine.step()
        except Exception as exc:  # a failed step fails the running sentences only
            log.exception("decoding failed with %d sentences running", len(self.engine))
            self.engine.drop(list(self.engine.sentences))
            failed, self._running = list(self._running.values()), {}
            self._fail(c, failed, exc)
            return
        redo = []
        for sid, hyps in finished.items():
            s = self._running.pop(sid)
            candidates = self.translator.candidates(hyps, s.data)  # made as read
            fallback = s.data.fallback
            if fallback is None:
                c.finished.append((s, list(candidates)))
                continue
            held = self.translator.with_terms(s.data, candidates, s.job.options.n_best)
            if held is None:
                redo.append((s, fallback))
            else:
                c.finished.append((s, held))
        c.redone = len(redo)
        with self.lock:
            for s, _ in c.finished:
                self.scheduler.finished(s)
            for s, fallback in redo:
                if s.job.cancelled:
                    self.scheduler.finished(s, Status.DROPPED, "withdrawn")
                else:
                    self.scheduler.redo(s, fallback)

    def _fail(self, c: Cycle, sentences: list[Work], exc: Exception) -> None:
        with self.lock:
            for s in sentences:
                self.scheduler.finished(s, Status.FINISHED, f"failed: {type(exc).__name__}")
        c.failed += sentences
        c.error = exc
