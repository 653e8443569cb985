"""The decode worker: continuous batching around one :class:`~service.decoding.Engine`.

Requests are queued in a :class:`~service.scheduler.Scheduler`. One worker task loops: it
asks the scheduler which queued sentences join the running batch and hands them to a single
decode thread, which encodes them, merges them into the engine and runs decoder steps. The
thread posts each finished sentence to the event loop at once (a request is answered the step
its last sentence ends) and keeps stepping; it returns for the next admission when a
withdrawn request must be dropped, or when waiting sentences are worth an encoder run: the
batch is small, several are waiting, or the first has waited ``ADMIT_WAIT_S``. The event loop
never decodes, so the server keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
    encode_seconds: float = 0.0
    batch_sentences: int = 0
    finished: float = 0.0


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
        # Set from the loop, read by the decode thread between steps:
        self._poke = threading.Event()  # new work was queued (at _poked_at)
        self._poked_at = 0.0
        self._waiting = 0  # sentences queued
        self._must_return = threading.Event()  # sentences to drop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

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
        if self._drop:
            self._must_return.set()
        self._changed()

    def _changed(self) -> None:
        self.metrics.queue_depth.set(self.scheduler.unstarted)
        self._waiting = self.scheduler.queued_sentences
        self._wakeup.set()
        if not self._poke.is_set():
            self._poked_at = time.perf_counter()
            self._poke.set()

    async def close(self) -> None:
        """Finish every queued and running request, then stop the worker."""
        self.scheduler.closing = True
        self._changed()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        while True:
            if self.scheduler.idle and not self._drop:
                if self.scheduler.closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.perf_counter()
            newcomers = [(self._requests[job], row) for job, row in self.scheduler.admit(now)]
            for request in {r for r, _ in newcomers}:
                if request.job.started == now:
                    self.metrics.queue_wait.observe(now - request.job.enqueued)
            self.metrics.queue_depth.set(self.scheduler.unstarted)
            self._waiting = self.scheduler.queued_sentences
            drop, self._drop = self._drop, []
            self._poke.clear()
            self._must_return.clear()
            # The thread's callbacks (_admitted, _finished) run before this await returns.
            failed = await loop.run_in_executor(self._executor, self._decode, newcomers, drop)
            if failed is not None:
                self._fail_running(failed)
            for sid in [s for s in self._owner if s not in self.engine.sentences]:  # dropped
                request, row = self._owner.pop(sid)
                self.scheduler.finished(request.job, row)
                self.metrics.pending_sentences.dec()

    # In the decode thread.

    def _decode(self, newcomers: list[tuple[Request, int]], drop: list[int]
                ) -> BaseException | None:
        """Drop, admit, then step until nothing runs or the loop has work for this thread."""
        assert self._loop is not None
        try:
            self.engine.drop(drop)
            admitted: dict[int, tuple[Request, int]] = {}
            if newcomers:
                admitted = self._admit(newcomers)
            while len(self.engine):
                finished = self.engine.step()
                self.metrics.batch_size.observe(len(self.engine) + len(finished))
                self.metrics.decode_steps.inc()
                if finished:
                    done = []
                    for sid, hyps in finished.items():
                        request, row = admitted.get(sid) or self._owner[sid]
                        done.append((sid, request, row, self.translator.candidates(
                            hyps, request.job.rows[row].masked)))
                    self._loop.call_soon_threadsafe(self._finished, done)
                if self._must_return.is_set() or (self._poke.is_set() and self._admit_now()):
                    break
        except Exception as exc:  # a failed step fails the running requests only
            log.exception("decoding failed with %d sentences running", len(self.engine))
            self.engine.drop(list(self.engine.sentences))
            return exc
        return None

    def _admit(self, newcomers: list[tuple[Request, int]]) -> dict[int, tuple[Request, int]]:
        assert self._loop is not None
        rows = [request.job.rows[row] for request, row in newcomers]
        started = time.perf_counter()
        encoded = self.translator.encode_rows(rows)
        encode_seconds = time.perf_counter() - started
        searches = [self.translator.search(r, request.options)
                    for r, (request, _) in zip(rows, newcomers, strict=True)]
        admitted = dict(zip(self.engine.admit(encoded, searches), newcomers, strict=True))
        self._loop.call_soon_threadsafe(self._admitted, admitted, encode_seconds)
        return admitted

    def _admit_now(self) -> bool:
        """Whether waiting sentences are worth leaving the step loop for."""
        free = self.scheduler.max_batch_sentences - len(self.engine)
        if free <= 0 or not self._waiting:
            return False
        return (len(self.engine) < SMALL_BATCH or self._waiting >= min(ADMIT_TOGETHER, free)
                or time.perf_counter() - self._poked_at >= ADMIT_WAIT_S)

    # In the loop, posted by the decode thread.

    def _admitted(self, admitted: dict[int, tuple[Request, int]], encode_seconds: float) -> None:
        self._owner.update(admitted)
        for request in {r for r, _ in admitted.values()}:
            request.encode_seconds += encode_seconds
            request.batch_sentences = request.batch_sentences or len(self._owner)
        withdrawn = [sid for sid, (r, _) in admitted.items() if r.job.cancelled]
        if withdrawn:  # while this round admitted them
            self._drop += withdrawn
            self._must_return.set()

    def _finished(self, done: list[tuple[int, Request, int, list[Candidate]]]) -> None:
        """Answer every request whose last sentence is in ``done``."""
        now = time.perf_counter()
        m = self.metrics
        for sid, request, row, candidates in done:
            self._owner.pop(sid, None)
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

    def _fail_running(self, exc: BaseException) -> None:
        for request, row in self._owner.values():
            self.scheduler.finished(request.job, row)
            self.metrics.pending_sentences.dec()
            if not request.future.done():
                request.future.set_exception(exc)
        self._owner.clear()
