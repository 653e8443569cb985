"""Continuous batching in the service: a :class:`Batcher` per model, one
:class:`DecodeWorker` thread for them all.

A model's requests are queued in its batcher's :class:`~service.scheduler.Scheduler`. The
decode worker runs a :class:`~service.driver.Driver` cycle (admissions and one decoder step)
of each model's batcher in turn, without waiting for the event loop, so no model starves
another and the models share the cores instead of oversubscribing them; every scheduler
call, from the loop or the thread, is made under that batcher's lock. The worker posts each
cycle's finished sentences to the event loop, which answers a request when its last
sentence is in. The event loop never decodes, so the server keeps accepting requests
meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from service.driver import Cycle, Driver, Work
from service.metrics import Metrics, ModelMetrics
from service.scheduler import Job, QueueTimeout, Scheduler, sentence_cost
from service.translator import Candidate, DecodeOptions, Prepared, Translation, Translator

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
    """A job plus what the event loop needs to answer it (the loop's own)."""

    job: Job[Prepared, DecodeOptions]
    future: asyncio.Future[None]
    results: list[Translation]
    remaining: int  # sentences not answered yet
    finished: float = 0.0


class Batcher:
    def __init__(self, translator: Translator, metrics: ModelMetrics, max_batch_size: int,
                 max_batch_tokens: int, max_request_tokens: int,
                 worker: DecodeWorker, max_queue_sentences: int = 1024,
                 queue_timeout_s: float = 30.0, max_step_cost: int = 0) -> None:
        self.translator = translator
        self.worker = worker
        self.metrics = metrics
        self.scheduler: Scheduler[Prepared, DecodeOptions] = Scheduler(
            max_batch_tokens, max_batch_size, max_request_tokens, max_queue_sentences)
        self.queue_timeout_s = queue_timeout_s
        self._lock = threading.Lock()  # around every call into the scheduler
        self.driver = Driver(translator, self.scheduler, translator.engine(max_step_cost),
                             self._lock)
        self._requests: dict[Job[Prepared, DecodeOptions], Request] = {}  # the loop's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = threading.Event()  # closing, and nothing queued or running any more
        self.counts = (0, 0, 0)  # queue_counts() after the last cycle (the decode thread's)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.worker.add(self)

    def queue_counts(self) -> tuple[int, int, int]:
        """Requests not started, sentences queued and sentences queued or running (the
        queue gauges of /metrics sum them over the models when scraped)."""
        with self._lock:
            s = self.scheduler
            return s.unstarted, s.queued_sentences, s.queued_sentences + s.running_sentences

    def cost(self, rows: Sequence[Prepared], options: DecodeOptions) -> list[int]:
        return [sentence_cost(len(r.ids), options.beam_size) for r in rows]

    async def submit(self, rows: Sequence[Prepared], options: DecodeOptions) -> BatchResult:
        """Queue ``rows`` and wait for their translations.

        Raises :class:`~service.errors.LimitExceeded` for a request over the cost cap,
        :class:`~service.scheduler.Overloaded` at once when the queue is full or closing, and
        :class:`QueueTimeout` when no sentence of it has started after ``queue_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        job = Job(rows, self.cost(rows, options), options, time.perf_counter())
        request = Request(job, loop.create_future(),
                          [Translation(r.ids, r.masked) for r in rows], len(job.sentences))
        with self._lock:
            self.scheduler.submit(job)
        self._requests[job] = request
        self.worker.wake()
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
                           job.encode_seconds, job.batch_sentences)

    async def _wait(self, request: Request) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(request.future), self.queue_timeout_s)
        except TimeoutError:
            with self._lock:
                started = request.job.started is not None
            if not started:
                raise QueueTimeout(f"queued for more than {self.queue_timeout_s:g}s "
                                   "(SERVICE_QUEUE_TIMEOUT_S)") from None
            await request.future  # it is decoding: let it finish

    def _forget(self, request: Request) -> None:
        """The client is answered, failed or gone: withdraw whatever of it is left."""
        self._requests.pop(request.job, None)
        if not request.remaining:
            return
        with self._lock:
            self.scheduler.withdraw(request.job)  # the thread drops its running sentences
        if not request.future.done():
            request.future.cancel()
        self.worker.wake()

    async def close(self) -> None:
        """Refuse new requests, finish every queued and running one, then leave the worker
        (what unloading a model waits for)."""
        with self._lock:
            self.scheduler.closing = True
        self.worker.wake()
        if self._loop is not None:
            await asyncio.to_thread(self._closed.wait)

    # In the decode thread.

    def cycle(self) -> bool:
        """One driver cycle; False when there was nothing to do. Once closing and idle, the
        batcher is closed (the worker forgets it)."""
        c = self.driver.cycle()
        self._observe(c)
        if c.finished or c.failed:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._answer, c.finished, c.failed, c.error)
        if c.idle:
            with self._lock:
                if self.scheduler.closing and self.scheduler.idle:
                    self._closed.set()
        return not c.idle

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _observe(self, c: Cycle) -> None:
        m = self.metrics
        for job in {s.job for s in c.admitted}:
            if job.started == c.admitted_at:  # its first sentences
                m.queue_wait.observe(job.started - job.enqueued)
        if c.rows:
            m.batch_size.observe(c.rows)
            m.decode_steps.inc()
        if c.redone:
            m.glossary_redone.inc(c.redone)
        self.counts = self.queue_counts()
        m.queued.set(self.counts[1])
        m.pending.set(self.counts[2])

    # In the loop, posted by the decode thread.

    def _answer(self, done: list[tuple[Work, list[Candidate]]], failed: list[Work],
                error: Exception | None) -> None:
        """Answer every request whose last sentence is in ``done``; fail those in
        ``failed``."""
        now = time.perf_counter()
        m = self.metrics
        for sentence, candidates in done:
            m.sentences.inc()
            m.tokens_in.inc(len(sentence.data.ids))
            m.tokens_out.inc(len(candidates[0].token_ids) + candidates[0].ended)
            request = self._requests.get(sentence.job)
            if request is None:  # its client has gone
                continue
            request.results[sentence.row] = Translation(sentence.data.ids,
                                                        sentence.data.masked, candidates)
            request.remaining -= 1
            if not request.remaining and not request.future.done():
                request.finished = now
                assert sentence.job.started is not None
                m.decode_seconds.observe(now - sentence.job.started)
                request.future.set_result(None)
        for sentence in failed:
            request = self._requests.get(sentence.job)
            if request is not None and not request.future.done():
                assert error is not None
                request.future.set_exception(error)


class DecodeWorker:
    """The one decode thread: a driver cycle of each model's batcher in turn, sleeping when
    none has work. Started by the first batcher; stops when the last one has closed."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics  # its queue totals, set after every round
        self._batchers: list[Batcher] = []
        self._lock = threading.Lock()
        self._work = threading.Event()  # something to do: wakes an idle thread
        self._thread: threading.Thread | None = None

    def add(self, batcher: Batcher) -> None:
        with self._lock:
            self._batchers.append(batcher)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
                self._thread.start()
        self.wake()

    def wake(self) -> None:
        self._work.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                batchers = list(self._batchers)
            busy = False
            for batcher in batchers:
                busy |= batcher.cycle()
                if batcher.closed:
                    with self._lock:
                        self._batchers.remove(batcher)
            if self.metrics is not None:
                self.metrics.count_queues([b.counts for b in batchers])
            if not busy:
                with self._lock:
                    if not self._batchers:
                        self._thread = None
                        return
                self._work.wait()
                self._work.clear()
