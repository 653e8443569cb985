"""The decode worker: continuous batching around one :class:`~service.decoding.Engine`.

Requests are queued in a :class:`~service.scheduler.Scheduler`. One worker task loops: it
asks the scheduler which queued sentences join the running batch, and hands them to a single
decode thread, which encodes them, merges them into the engine and runs decoder steps until a
sentence finishes or new work (or a withdrawn request) is waiting. Finished sentences are
answered at once; a request is answered when its last sentence is. The event loop never
decodes, so the server keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.decoding import Engine, Hypothesis
from service.metrics import Metrics
from service.scheduler import Job, Overloaded, QueueTimeout, Scheduler, sentence_cost
from service.translator import Candidate, DecodeOptions, Prepared, Translation, Translator

__all__ = ["BatchResult", "Batcher", "Overloaded", "QueueTimeout"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    translations: list[Translation]
    queue_seconds: float  # until its first sentence joined the running batch
    decode_seconds: float  # from then until its last sentence finished
    encode_seconds: float  # encoder runs that included its sentences
    batch_sentences: int  # running sentences when it joined


@dataclass(eq=False)
class Request:
    """A job plus what the worker needs to answer it."""

    job: Job[Prepared]
    options: DecodeOptions
    future: asyncio.Future[None]
    results: list[Translation]
    sentence_ids: dict[int, int] = field(default_factory=dict)  # engine id -> row
    encode_seconds: float = 0.0
    batch_sentences: int = 0
    finished: float = 0.0


@dataclass
class _Round:
    """What one trip to the decode thread did."""

    finished: dict[int, list[Candidate]]  # engine sentence id -> candidates
    admitted: dict[int, tuple[Request, int]]  # engine sentence id -> (request, row)
    encode_seconds: float = 0.0
    failed: BaseException | None = None


class Batcher:
    def __init__(self, translator: Translator, metrics: Metrics, max_batch_size: int,
                 max_batch_tokens: int, max_request_tokens: int,
                 max_queue_sentences: int = 1024, queue_timeout_s: float = 30.0) -> None:
        self.translator = translator
        self.metrics = metrics
        self.scheduler: Scheduler[Prepared] = Scheduler(
            max_batch_tokens, max_batch_size, max_request_tokens, max_queue_sentences)
        self.queue_timeout_s = queue_timeout_s
        self.engine: Engine = translator.engine()
        self._owner: dict[int, tuple[Request, int]] = {}  # engine sentence id -> (request, row)
        self._requests: dict[Job[Prepared], Request] = {}
        self._drop: list[int] = []  # engine ids of withdrawn requests, dropped next round
        self._wakeup = asyncio.Event()
        self._poke = threading.Event()  # set from the loop: the decode thread should return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    def cost(self, rows: Sequence[Prepared], options: DecodeOptions) -> list[int]:
        return [sentence_cost(len(r.ids), options.beam_size) for r in rows]

    async def submit(self, rows: Sequence[Prepared], options: DecodeOptions) -> BatchResult:
        """Queue ``rows`` and wait for their translations.

        Raises :class:`~service.errors.LimitExceeded` for a request over the cost cap,
        :class:`Overloaded` at once when the queue is full or closing, and
        :class:`QueueTimeout` when no sentence of it has started after ``queue_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        job = Job(rows, self.cost(rows, options), time.perf_counter())
        self.scheduler.submit(job)
        request = Request(job, options, loop.create_future(),
                          [Translation(r.ids, r.masked) for r in rows])
        self._requests[job] = request
        self.metrics.pending_sentences.inc(len(job.waiting))
        self._changed()
        try:
            if job.done:  # only empty texts
                request.finished = job.enqueued
            else:
                await self._wait(request)
        finally:
            self._forget(request)
        for result in request.results:
            if not result.candidates:  # empty text
                result.candidates = [self.translator.empty_candidate()]
        started = job.started or job.enqueued
        return BatchResult(request.results, started - job.enqueued, request.finished - started,
                           request.encode_seconds, request.batch_sentences)

    async def _wait(self, request: Request) -> None:
        job = request.job
        try:
            await asyncio.wait_for(asyncio.shield(request.future), self.queue_timeout_s)
        except TimeoutError:
            if not job.started:
                raise QueueTimeout(f"queued for more than {self.queue_timeout_s:g}s "
                                   "(SERVICE_QUEUE_TIMEOUT_S)") from None
            await request.future  # it is decoding: let it finish

    def _forget(self, request: Request) -> None:
        """The client is answered, failed or gone: withdraw whatever of it is left."""
        job = request.job
        self._requests.pop(job, None)
        if job.done and request.future.done():
            return
        job.cancelled = True
        self.metrics.pending_sentences.dec(len(job.waiting))
        self.scheduler.withdraw(job)
        self._drop.extend(sid for sid, (owner, _) in self._owner.items() if owner is request)
        if not request.future.done():
            request.future.cancel()
        self._changed()

    def _changed(self) -> None:
        self.metrics.queue_depth.set(self.scheduler.unstarted)
        self._wakeup.set()
        self._poke.set()

    async def close(self) -> None:
        """Finish every queued and running request, then stop the worker."""
        self.scheduler.closing = True
        self._changed()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.scheduler.idle and not self._drop:
                if self.scheduler.closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.perf_counter()
            admitted = self.scheduler.admit(now)
            newcomers = [(self._requests[job], row) for job, row in admitted]
            for request in {r for r, _ in newcomers}:
                if request.job.started == now:
                    self.metrics.queue_wait.observe(now - request.job.enqueued)
            self.metrics.queue_depth.set(self.scheduler.unstarted)
            drop, self._drop = self._drop, []
            self._poke.clear()
            round_ = await loop.run_in_executor(self._executor, self._decode, newcomers, drop)
            self._deliver(round_, newcomers)

    def _decode(self, newcomers: list[tuple[Request, int]], drop: list[int]) -> _Round:
        """In the decode thread: admit, then step until something finishes or new work
        waits."""
        round_ = _Round({}, {})
        try:
            self._admit(newcomers, drop, round_)
            while len(self.engine):
                finished = self.engine.step()
                self.metrics.batch_size.observe(len(self.engine) + len(finished))
                self.metrics.decode_steps.inc()
                for sid, hyps in finished.items():
                    request, row = round_.admitted.get(sid) or self._owner[sid]
                    round_.finished[sid] = self._candidates(request, row, hyps)
                if finished or self._poke.is_set():
                    break
        except Exception as exc:  # a failed step fails the running requests only
            log.exception("decoding failed with %d sentences running", len(self.engine))
            round_.failed = exc
            self.engine.drop(list(self.engine.sentences))
        return round_

    def _admit(self, newcomers: list[tuple[Request, int]], drop: list[int],
               round_: _Round) -> None:
        self.engine.drop(drop)
        if not newcomers:
            return
        rows = [request.job.rows[row] for request, row in newcomers]
        started = time.perf_counter()
        encoded = self.translator.encode_rows(rows)
        round_.encode_seconds = time.perf_counter() - started
        searches = [self.translator.search(r, request.options)
                    for r, (request, _) in zip(rows, newcomers, strict=True)]
        round_.admitted = dict(zip(self.engine.admit(encoded, searches), newcomers, strict=True))

    def _candidates(self, request: Request, row: int, hyps: list[Hypothesis]
                    ) -> list[Candidate]:
        return self.translator.candidates(hyps, request.job.rows[row].masked)

    def _deliver(self, round_: _Round, newcomers: list[tuple[Request, int]]) -> None:
        """In the loop: answer every request whose last sentence finished. (``_owner`` is
        changed only here, while the decode thread is idle.)"""
        self._owner.update(round_.admitted)
        for request in {r for r, _ in newcomers}:
            request.encode_seconds += round_.encode_seconds
            request.batch_sentences = request.batch_sentences or len(self._owner)
        if round_.failed is not None:
            self._fail_running(round_.failed)
            return
        now = time.perf_counter()
        m = self.metrics
        for sid, candidates in round_.finished.items():
            request, row = self._owner.pop(sid)
            self.scheduler.finished(request.job, row)
            request.results[row].candidates = candidates
            m.sentences.inc()
            m.tokens_in.inc(len(request.job.rows[row].ids))
            m.tokens_out.inc(len(candidates[0].token_ids) + candidates[0].ended)
            m.pending_sentences.dec()
            if request.job.done and not request.future.done():
                request.finished = now
                m.decode_seconds.observe(now - request.job.started)
                request.future.set_result(None)
        for sid in [s for s in self._owner if s not in self.engine.sentences]:  # dropped
            request, row = self._owner.pop(sid)
            self.scheduler.finished(request.job, row)
            m.pending_sentences.dec()
        # Withdrawn while this round admitted them: drop them next round.
        self._drop += [sid for sid, (request, _) in round_.admitted.items()
                       if request.job.cancelled and sid in self._owner]

    def _fail_running(self, exc: BaseException) -> None:
        for request, row in self._owner.values():
            self.scheduler.finished(request.job, row)
            self.metrics.pending_sentences.dec()
            if not request.future.done():
                request.future.set_exception(exc)
        self._owner.clear()
