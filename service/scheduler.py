"""Admission control for the running batch: synchronous, no threads, no model.

A request is a :class:`Job` of :class:`Sentence` records; the scheduler owns every record's
:class:`Status` (waiting -> running -> finished, or dropped). Jobs wait in a FIFO queue.
Before every decoder step the worker asks :meth:`Scheduler.admit` which waiting sentences
join the running batch, within two budgets:

- ``max_batch_tokens``: the sum over running sentences of rows (beam size) x source tokens,
  like text-generation-inference's ``max_batch_total_tokens``: what a step costs in
  attention and what the encoder store holds;
- ``max_batch_sentences``: running sentences.

A job is admitted sentence by sentence, so a large request runs partly while it waits for
room for the rest, and a request behind it that fits in what is left joins at once
(backfilling) instead of waiting for the large one to finish. Backfilling stops at the first
waiting job with nothing running: that job is next, and the running batch drains for it, so
nothing starves. Each admission costs an encoder run, so while a large batch runs, newcomers
are admitted together (see :meth:`Scheduler.admit`). Queue length and queue time are bounded
too; see :class:`Overloaded` and :class:`QueueTimeout`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import Busy, LimitExceeded

Row = TypeVar("Row")
Options = TypeVar("Options")

# While at least SMALL_BATCH sentences run, newcomers wait until ADMIT_TOGETHER of them (or
# every free place) are there, or the oldest has waited ADMIT_WAIT_S (well under one step).
SMALL_BATCH = 8
ADMIT_TOGETHER = 4
ADMIT_WAIT_S = 0.004


class Overloaded(Busy):
    """The queue is full or shutting down: the request was not accepted."""


class QueueTimeout(Busy):
    """The request waited in the queue longer than the timeout; its work was dropped."""


def sentence_cost(source_tokens: int, beam_size: int) -> int:
    """Rows x source tokens: one sentence's share of a step's budget."""
    return beam_size * source_tokens


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"  # see Sentence.reason: "done" or "failed"
    DROPPED = "dropped"  # withdrawn: its client left or it timed out in the queue


@dataclass(eq=False)
class Sentence(Generic[Row, Options]):
    """One text of a job on its way through the running batch."""

    job: Job[Row, Options]
    row: int  # its index in job.rows
    cost: int
    status: Status = Status.WAITING
    reason: str = ""  # why it finished or was dropped
    engine_id: int | None = None  # the decode thread's: its id in the engine while running
    again: Row | None = None  # what it is decoded from instead of its row (:meth:`redo`)

    @property
    def data(self) -> Row:
        return self.job.rows[self.row] if self.again is None else self.again


@dataclass(eq=False)
class Job(Generic[Row, Options]):
    """One request: its rows, the options they are decoded with, and a sentence record per
    row that needs decoding (a row of cost 0, an empty text, has none)."""

    rows: Sequence[Row]
    costs: Sequence[int]  # per row
    options: Options
    enqueued: float
    started: float | None = None  # when its first sentence was admitted
    cancelled: bool = False
    sentences: list[Sentence[Row, Options]] = field(default_factory=list)
    waiting: deque[Sentence[Row, Options]] = field(default_factory=deque)  # in row order
    running: int = 0
    # Written by the decode thread before it posts the job's last sentence:
    encode_seconds: float = 0.0  # encoder runs that included its sentences
    batch_sentences: int = 0  # sentences running when its first ones joined

    def __post_init__(self) -> None:
        self.sentences = [Sentence(self, i, c) for i, c in enumerate(self.costs) if c]
        self.waiting.extend(self.sentences)

    @property
    def cost(self) -> int:
        return sum(self.costs)


class Scheduler(Generic[Row, Options]):
    """FIFO queue with per-step budgets, sentence-level admission and backfilling."""

    def __init__(self, max_batch_tokens: int, max_batch_sentences: int,
                 max_request_tokens: int, max_queue_sentences: int,
                 admit_wait_s: float = ADMIT_WAIT_S) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_sentences = max_batch_sentences
        # A request with nothing running may start one sentence beyond the cap, up to an
        # eighth more: one request holding every place (it may hold as many texts as the
        # batch has places) does not keep the others waiting until its sentences finish.
        self.newcomer_places = max_batch_sentences // 8
        self.max_request_tokens = max_request_tokens
        self.max_queue_sentences = max_queue_sentences
        self.admit_wait_s = admit_wait_s
        self.queue: deque[Job[Row, Options]] = deque()  # jobs with sentences still waiting
        self.running_tokens = 0
        self.running_sentences = 0
        self.closing = False
        self._first_waiting = 0.0  # when the oldest unadmitted sentence was queued
        self._withdrawn: list[Job[Row, Options]] = []  # withdrawn with sentences running

    @property
    def queued_sentences(self) -> int:
        return sum(len(j.waiting) for j in self.queue)

    @property
    def unstarted(self) -> int:
        """Requests with no sentence admitted yet."""
        return sum(j.started is None for j in self.queue)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.running_sentences

    def submit(self, job: Job[Row, Options]) -> None:
        """Queue ``job``; raise :class:`LimitExceeded` for a request that costs more than
        ``max_request_tokens`` and :class:`Overloaded` when closing or the queue is full."""
        if job.cost > self.max_request_tokens:
            raise LimitExceeded(f"the request costs {job.cost} beam rows x source tokens; "
                                f"the limit is {self.max_request_tokens} "
                                "(SERVICE_MAX_REQUEST_TOKENS): send fewer or shorter texts, "
                                "or a smaller beam_size")
        if self.closing:
            raise Overloaded("no longer taking requests: the model is unloading or the service "
                             "is shutting down")
        queued = self.queued_sentences
        if queued + len(job.waiting) > self.max_queue_sentences:
            raise Overloaded(f"the queue holds {queued} sentences; the limit is "
                             f"{self.max_queue_sentences} (SERVICE_MAX_QUEUE_SENTENCES)")
        if job.waiting:
            if not queued:
                self._first_waiting = job.enqueued
            self.queue.append(job)

    def admit(self, now: float) -> list[Sentence[Row, Options]]:
        """The sentences that join the running batch before the next step (now running).

        While ``SMALL_BATCH`` or more run, a few newcomers wait for company (an encoder run
        each admission) unless the oldest has waited ``admit_wait_s``."""
        waiting = self.queued_sentences
        if not waiting:
            return []
        free = max(self.max_batch_sentences - self.running_sentences, 1)
        if (self.running_sentences >= SMALL_BATCH and waiting < min(ADMIT_TOGETHER, free)
                and now - self._first_waiting < self.admit_wait_s):
            return []
        admitted: list[Sentence[Row, Options]] = []
        for job in list(self.queue):
            while job.waiting and self._fits(job.waiting[0].cost, newcomer=not job.running):
                sentence = job.waiting.popleft()
                sentence.status = Status.RUNNING
                self.running_tokens += sentence.cost
                self.running_sentences += 1
                job.running += 1
                if job.started is None:
                    job.started = now
                admitted.append(sentence)
            if not job.waiting:
                self.queue.remove(job)
            elif not job.running:  # it would starve if others kept filling the budget
                break
        self._first_waiting = now
        return admitted

    def finished(self, sentence: Sentence[Row, Options], status: Status = Status.FINISHED,
                 reason: str = "done") -> None:
        """A running sentence is done, failed or dropped: its budget is free again."""
        assert sentence.status is Status.RUNNING, sentence.status
        sentence.status, sentence.reason = status, reason
        self.running_tokens -= sentence.cost
        self.running_sentences -= 1
        sentence.job.running -= 1

    def redo(self, sentence: Sentence[Row, Options], data: Row) -> None:
        """A running sentence is decoded once more, from ``data`` (its glossary terms
        enforced where the model's own translation missed one): its place is free, and it
        waits at the head of the queue, its request's admission time unchanged."""
        assert sentence.status is Status.RUNNING and sentence.again is None, sentence.status
        self.finished(sentence)
        sentence.status, sentence.reason, sentence.again = Status.WAITING, "", data
        sentence.job.waiting.appendleft(sentence)
        if sentence.job not in self.queue:
            self.queue.appendleft(sentence.job)

    def withdraw(self, job: Job[Row, Options]) -> None:
        """Its client left or it timed out in the queue: its waiting sentences are dropped
        now, its running ones by the worker (:meth:`take_withdrawn`) before the next step."""
        job.cancelled = True
        for sentence in job.waiting:
            sentence.status, sentence.reason = Status.DROPPED, "withdrawn"
        job.waiting.clear()
        if job in self.queue:
            self.queue.remove(job)
        if job.running:
            self._withdrawn.append(job)

    def take_withdrawn(self) -> list[Sentence[Row, Options]]:
        """Running sentences of withdrawn jobs, for the worker to drop from the engine (it
        then reports each with :meth:`finished` as ``DROPPED``)."""
        jobs, self._withdrawn = self._withdrawn, []
        return [s for job in jobs for s in job.sentences if s.status is Status.RUNNING]

    def _fits(self, cost: int, newcomer: bool) -> bool:
        places = self.max_batch_sentences + (self.newcomer_places if newcomer else 0)
        if self.running_sentences >= places:
            return False
        # An empty batch takes any sentence the request cap allows: nothing else could run.
        return not self.running_sentences or self.running_tokens + cost <= self.max_batch_tokens
