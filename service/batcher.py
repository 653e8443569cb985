"""Dynamic batching: requests that arrive together are decoded as one batch.

Jobs wait in a queue; one worker takes the oldest job, waits up to ``max_wait`` for more
jobs with the same decoding options (up to ``max_batch_size`` sentences), and decodes them in
a single thread off the event loop, so the server keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.errors import Busy
from service.metrics import Metrics
from service.translator import Decoded, DecodeOptions, Prepared, Translation, Translator

log = logging.getLogger(__name__)


class Overloaded(Busy):
    """The queue is full or shutting down: the request was not accepted."""


class QueueTimeout(Busy):
    """The request waited in the queue longer than the timeout; its work was dropped."""


@dataclass
class Job:
    rows: Sequence[Prepared]
    options: DecodeOptions
    future: asyncio.Future[list[Translation]]
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0  # when its batch began decoding
    batch_sentences: int = 0  # size of the batch it was decoded in
    encode_seconds: float = 0.0  # the batch's encoder run


@dataclass(frozen=True)
class BatchResult:
    translations: list[Translation]
    queue_seconds: float
    decode_seconds: float  # encoder + search
    encode_seconds: float
    batch_sentences: int


class Batcher:
    def __init__(self, translator: Translator, metrics: Metrics, max_batch_size: int,
                 max_wait_s: float, max_queue_sentences: int = 1024,
                 queue_timeout_s: float = 30.0) -> None:
        self.translator = translator
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_sentences = max_queue_sentences
        self.queue_timeout_s = queue_timeout_s
        self._jobs: deque[Job] = deque()
        self._queued_sentences = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_arrival = 0.0
        self._arrival_gap = float("inf")  # between the last two submissions

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def submit(self, rows: Sequence[Prepared], options: DecodeOptions) -> BatchResult:
        """Queue ``rows`` and wait for their translations.

        Raises :class:`Overloaded` at once when the queue is full or closing, and
        :class:`QueueTimeout` when the job is still queued after ``queue_timeout_s``.
        """
        if self._closing:
            raise Overloaded("the service is shutting down")
        if self._queued_sentences + len(rows) > self.max_queue_sentences:
            raise Overloaded(f"the queue holds {self._queued_sentences} sentences; the limit is "
                             f"{self.max_queue_sentences} (SERVICE_MAX_QUEUE_SENTENCES)")
        job = Job(rows, options, asyncio.get_running_loop().create_future())
        self._arrival_gap = job.enqueued - self._last_arrival
        self._last_arrival = job.enqueued
        self._jobs.append(job)
        self._queued_sentences += len(rows)
        self.metrics.queue_depth.set(len(self._jobs))
        self.metrics.pending_sentences.inc(len(rows))
        self._wakeup.set()
        try:
            translations = await asyncio.wait_for(asyncio.shield(job.future),
                                                  self.queue_timeout_s)
        except TimeoutError:
            if job.started:  # its batch is decoding: let it finish
                translations = await job.future
            else:
                self._jobs.remove(job)
                self._queued_sentences -= len(rows)
                self.metrics.pending_sentences.dec(len(rows))
                job.future.cancel()
                raise QueueTimeout(f"queued for more than {self.queue_timeout_s:g}s "
                                   "(SERVICE_QUEUE_TIMEOUT_S)") from None
        finished = time.perf_counter()
        return BatchResult(translations, job.started - job.enqueued, finished - job.started,
                           job.encode_seconds, job.batch_sentences)

    async def close(self) -> None:
        """Finish every queued job, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill(loop)
            batch = self._take()
            self.metrics.queue_depth.set(len(self._jobs))
            await self._decode(loop, batch)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to ``max_wait_s`` for compatible jobs to fill the batch.

        Only during a burst (the last two jobs arrived less than ``max_wait_s`` apart): a
        lone request starts at once, so batching costs idle traffic no latency.
        """
        if self._arrival_gap >= self.max_wait_s:
            return
        deadline = loop.time() + self.max_wait_s
        while self._compatible_rows() < self.max_batch_size and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _compatible_rows(self) -> int:
        options = self._jobs[0].options
        return sum(len(j.rows) for j in self._jobs if j.options == options)

    def _take(self) -> list[Job]:
        """The oldest job plus later ones with the same options, up to the batch size."""
        first = self._jobs.popleft()
        batch, rows, rest = [first], len(first.rows), deque[Job]()
        while self._jobs:
            job = self._jobs.popleft()
            if job.options == first.options and rows + len(job.rows) <= self.max_batch_size:
                batch.append(job)
                rows += len(job.rows)
            else:
                rest.append(job)
        self._jobs.extendleft(reversed(rest))
        self._queued_sentences -= rows
        return batch

    async def _decode(self, loop: asyncio.AbstractEventLoop, batch: list[Job]) -> None:
        try:
            await self._decode_live(loop, [j for j in batch if not j.future.done()])
        finally:  # answered, failed or skipped: no longer pending
            self.metrics.pending_sentences.dec(sum(len(j.rows) for j in batch))

    async def _decode_live(self, loop: asyncio.AbstractEventLoop, live: list[Job]) -> None:
        """Decode the jobs whose clients are still waiting (the others went away)."""
        if not live:
            return
        rows = [row for job in live for row in job.rows]
        now = time.perf_counter()
        for job in live:
            job.started, job.batch_sentences = now, len(rows)
            self.metrics.queue_wait.observe(now - job.enqueued)
        try:
            decoded = await loop.run_in_executor(
                self._executor, self.translator.translate_prepared, rows, live[0].options)
        except Exception as exc:  # a failed batch fails its own requests only
            log.exception("decoding a batch of %d sentences failed", len(rows))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._observe(rows, decoded, time.perf_counter() - now)
        at = 0
        for job in live:
            job.encode_seconds = decoded.stats.encode_seconds
            if not job.future.done():
                job.future.set_result(decoded.translations[at : at + len(job.rows)])
            at += len(job.rows)

    def _observe(self, rows: Sequence[Prepared], decoded: Decoded, seconds: float) -> None:
        m = self.metrics
        m.batch_size.observe(len(rows))
        m.decode_seconds.observe(seconds)
        m.tokens_in.inc(sum(len(r.ids) for r in rows))
        m.tokens_out.inc(sum(len(t.best.token_ids) + t.best.ended
                             for t in decoded.translations if t.source_ids))
        m.decode_steps.inc(decoded.stats.decoder_steps)
