"""The decode worker: continuous batching around one :class:`~service.decoding.Engine`.

Requests are queued in a :class:`~service.scheduler.Scheduler`. One decode thread owns the
engine and runs without waiting for the event loop: before each step it drops the sentences
of withdrawn requests and asks the scheduler (under a lock shared with the loop) which queued
sentences join, encodes them and merges them in, when they are worth an encoder run (the batch
is small, several wait, or the first has waited ``ADMIT_WAIT_S``). It posts each finished
sentence to the event loop, which answers a request when its last sentence is in. The event
loop never decodes, so the server keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.decoding import Engine
from service.metrics import Metrics
from service.scheduler import Job, QueueTimeout, Scheduler, sentence_cost
from service.translator import Candidate, DecodeOptions, Prepared, Translation, Translator

log = logging.getLogger(__name__)

# Each admission between steps costs an encoder run, so while a large batch runs, newcomers
# are admitted together: at once if the batch is small or ADMIT_TOGETHER sentences wait,
# else after at most ADMIT_WAIT_S (well under one step).
SMALL_BATCH = 8
ADMIT_TOGETHER = 4
ADMIT_WAIT_S = 0.004


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
    remaining: int = 0  # sentences not answered yet
    sentence_ids: set[int] = field(default_factory=set)  # its sentences in the engine
    encode_seconds: float = 0.0
    batch_sentences: int = 0
    finished: float = 0.0


class Batcher:
    def __init__(self, translator: Translator, metrics: Metrics, max_batch_size: int,
                 max_batch_tokens: int, max_request_tokens: int,
                 max_queue_sentences: int = 1024, queue_timeout_s: float = 30.0,
                 max_step_cost: int = 0) -> None:
        self.translator = translator
        self.metrics = metrics
        self.scheduler: Scheduler[Prepared] = Scheduler(
            max_batch_tokens, max_batch_size, max_request_tokens, max_queue_sentences)
        self.queue_timeout_s = queue_timeout_s
        metrics.queue_limit.set(max_queue_sentences)
        self.engine: Engine = translator.engine(max_step_cost)
        # Shared by the loop and the decode thread, under _lock:
        self._lock = threading.Lock()
        self._requests: dict[Job[Prepared], Request] = {}
        self._drop: list[int] = []  # engine ids of withdrawn requests
        self._first_waiting = 0.0  # when the oldest unadmitted sentence was queued
        self._work = threading.Event()  # something to do: wakes an idle decode thread
        # The decode thread's own: engine sentence id -> (request, row)
        self._running: dict[int, tuple[Request, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._decode_forever, name="decode", daemon=True)
        self._thread.start()

    def _queue_gauges(self) -> None:
        """(Under the lock.) Requests not started and sentences waiting, for /metrics."""
        self.metrics.queue_depth.set(self.scheduler.unstarted)
        self.metrics.queued_sentences.set(self.scheduler.queued_sentences)

    def cost(self, rows: Sequence[Prepared], options: DecodeOptions) -> list[int]:
        return [sentence_cost(len(r.ids), options.beam_size) for r in rows]

    async def submit(self, rows: Sequence[Prepared], options: DecodeOptions) -> BatchResult:
        """Queue ``rows`` and wait for their translations.

        Raises :class:`~service.errors.LimitExceeded` for a request over the cost cap,
        :class:`~service.scheduler.Overloaded` at once when the queue is full or closing, and
        :class:`QueueTimeout` when no sentence of it has started after ``queue_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        job = Job(rows, self.cost(rows, options), time.perf_counter())
        request = Request(job, options, loop.create_future(),
                          [Translation(r.ids, r.masked) for r in rows], len(job.waiting))
        with self._lock:
            self.scheduler.submit(job)
            self._requests[job] = request
            if job.waiting and not self.scheduler.queued_sentences - len(job.waiting):
                self._first_waiting = job.enqueued
            self._queue_gauges()
        self.metrics.pending_sentences.inc(len(job.waiting))
        self._work.set()
        try:
            if not request.remaining:  # only empty texts
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
        with self._lock:
            self._requests.pop(job, None)
            if not request.remaining:
                return
            job.cancelled = True
            self.metrics.pending_sentences.dec(len(job.waiting))
            self.scheduler.withdraw(job)
            self._drop.extend(request.sentence_ids)  # the thread drops them before its next step
            self._queue_gauges()
        if not request.future.done():
            request.future.cancel()
        self._work.set()

    async def close(self) -> None:
        """Finish every queued and running request, then stop the decode thread."""
        with self._lock:
            self.scheduler.closing = True
        self._work.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # In the decode thread.

    def _decode_forever(self) -> None:
        while True:
            with self._lock:
                drop, self._drop = self._drop, []
                admitted = self._admissions()
                idle = self.scheduler.idle and not drop and not admitted
                closing = self.scheduler.closing
            if drop:
                self._drop_sentences(drop)
            if admitted:
                self._admit(admitted)
            if len(self.engine):
                self._step()
            elif idle:
                if closing:
                    return
                self._work.wait()
                self._work.clear()

    def _admissions(self) -> list[tuple[Request, int]]:
        """(Under the lock.) The sentences that join before the next step, if any are worth
        an encoder run now."""
        waiting = self.scheduler.queued_sentences
        if not waiting:
            return []
        free = self.scheduler.max_batch_sentences - len(self.engine)
        if len(self.engine) >= SMALL_BATCH and waiting < min(ADMIT_TOGETHER, max(free, 1)) and (
                time.perf_counter() - self._first_waiting < ADMIT_WAIT_S):
            return []
        now = time.perf_counter()
        admitted = [(self._requests[job], row) for job, row in self.scheduler.admit(now)]
        for request in {r for r, _ in admitted}:
            if request.job.started == now:
                self.metrics.queue_wait.observe(now - request.job.enqueued)
        self._first_waiting = now
        self._queue_gauges()
        return admitted

    def _admit(self, newcomers: list[tuple[Request, int]]) -> None:
        rows = [request.job.rows[row] for request, row in newcomers]
        started = time.perf_counter()
        try:
            encoded = self.translator.encode_rows(rows)
            searches = [self.translator.search(r, request.options)
                        for r, (request, _) in zip(rows, newcomers, strict=True)]
            ids = self.engine.admit(encoded, searches)
        except Exception as exc:
            log.exception("encoding %d sentences failed", len(rows))
            self._fail({(r, row): exc for r, row in newcomers}, exc)
            return
        seconds = time.perf_counter() - started
        for sid, (request, row) in zip(ids, newcomers, strict=True):
            self._running[sid] = (request, row)
            request.sentence_ids.add(sid)
        running = len(self.engine)
        for request in {r for r, _ in newcomers}:
            request.encode_seconds += seconds
            request.batch_sentences = request.batch_sentences or running
            if request.job.cancelled:  # withdrawn while being admitted
                with self._lock:
                    self._drop.extend(request.sentence_ids)

    def _step(self) -> None:
        try:
            finished = self.engine.step()
        except Exception as exc:  # a failed step fails the running requests only
            log.exception("decoding failed with %d sentences running", len(self.engine))
            self.engine.drop(list(self.engine.sentences))
            self._fail(dict.fromkeys(self._running.values(), exc), exc)
            self._running.clear()
            return
        self.metrics.batch_size.observe(len(self.engine) + len(finished))
        self.metrics.decode_steps.inc()
        if not finished:
            return
        done = []
        with self._lock:
            for sid in finished:
                request, row = self._running[sid]
                self.scheduler.finished(request.job, row)
        for sid, hyps in finished.items():
            request, row = self._running.pop(sid)
            request.sentence_ids.discard(sid)
            done.append((request, row, self.translator.candidates(
                hyps, request.job.rows[row].masked)))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._answer, done)

    def _drop_sentences(self, ids: list[int]) -> None:
        self.engine.drop(ids)
        gone = [sid for sid in dict.fromkeys(ids) if sid in self._running]
        with self._lock:
            for sid in gone:
                request, row = self._running[sid]
                self.scheduler.finished(request.job, row)
        for sid in gone:
            request, _ = self._running.pop(sid)
            request.sentence_ids.discard(sid)
            self.metrics.pending_sentences.dec()

    def _fail(self, failed: dict[tuple[Request, int], Exception], exc: Exception) -> None:
        with self._lock:
            for request, row in failed:
                self.scheduler.finished(request.job, row)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._answer_failure, list(failed), exc)

    # In the loop, posted by the decode thread.

    def _answer(self, done: list[tuple[Request, int, list[Candidate]]]) -> None:
        """Answer every request whose last sentence is in ``done``."""
        now = time.perf_counter()
        m = self.metrics
        for request, row, candidates in done:
            request.results[row].candidates = candidates
            request.remaining -= 1
            m.sentences.inc()
            m.tokens_in.inc(len(request.job.rows[row].ids))
            m.tokens_out.inc(len(candidates[0].token_ids) + candidates[0].ended)
            m.pending_sentences.dec()
            if not request.remaining and not request.future.done():
                request.finished = now
                m.decode_seconds.observe(now - request.job.started)
                request.future.set_result(None)

    def _answer_failure(self, failed: list[tuple[Request, int]], exc: Exception) -> None:
        for request, _ in failed:
            self.metrics.pending_sentences.dec()
            if not request.future.done():
                request.future.set_exception(exc)
