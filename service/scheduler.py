"""Admission control for the running batch: synchronous, no threads, no model.

Requests (:class:`Job`) wait in a FIFO queue. Before every decoder step the worker asks
:meth:`Scheduler.admit` which of their sentences join the running batch, within two budgets:

- ``max_batch_tokens``: the sum over running sentences of rows (beam size) x source tokens,
  like text-generation-inference's ``max_batch_total_tokens``: what a step costs in
  attention and what the encoder store holds;
- ``max_batch_sentences``: running sentences.

A job is admitted sentence by sentence, so a large request runs partly while it waits for
room for the rest, and a request behind it that fits in what is left joins at once
(backfilling) instead of waiting for the large one to finish. Backfilling stops at the first
waiting job with nothing running: that job is next, and the running batch drains for it, so
nothing starves. Queue length and queue time are bounded too; see :class:`Overloaded` and
:class:`QueueTimeout`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import Busy, LimitExceeded

Row = TypeVar("Row")


class Overloaded(Busy):
    """The queue is full or shutting down: the request was not accepted."""


class QueueTimeout(Busy):
    """The request waited in the queue longer than the timeout; its work was dropped."""


def sentence_cost(source_tokens: int, beam_size: int) -> int:
    """Rows x source tokens: one sentence's share of a step's budget."""
    return beam_size * source_tokens


@dataclass(eq=False)
class Job(Generic[Row]):
    """One request: sentences (with their costs) and how far each has got."""

    rows: Sequence[Row]
    costs: Sequence[int]  # per row; 0 for rows that need no decoding (empty texts)
    enqueued: float
    waiting: deque[int] = field(default_factory=deque)  # rows not yet admitted, in order
    running: int = 0  # rows admitted and not finished
    started: float = 0.0  # when its first row was admitted (0: still queued)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.waiting.extend(i for i, c in enumerate(self.costs) if c)

    @property
    def cost(self) -> int:
        return sum(self.costs)


class Scheduler(Generic[Row]):
    """FIFO queue with per-step budgets, sentence-level admission and backfilling."""

    def __init__(self, max_batch_tokens: int, max_batch_sentences: int,
                 max_request_tokens: int, max_queue_sentences: int) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_sentences = max_batch_sentences
        self.max_request_tokens = max_request_tokens
        self.max_queue_sentences = max_queue_sentences
        self.queue: deque[Job[Row]] = deque()  # jobs with rows still waiting, oldest first
        self.running_tokens = 0
        self.running_sentences = 0
        self.closing = False

    @property
    def queued_sentences(self) -> int:
        return sum(len(j.waiting) for j in self.queue)

    @property
    def unstarted(self) -> int:
        """Requests with no sentence admitted yet."""
        return sum(not j.started for j in self.queue)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.running_sentences

    def submit(self, job: Job[Row]) -> None:
        """Queue ``job``; raise :class:`LimitExceeded` for a request that costs more than
        ``max_request_tokens`` and :class:`Overloaded` when closing or the queue is full."""
        if job.cost > self.max_request_tokens:
            raise LimitExceeded(f"the request costs {job.cost} beam rows x source tokens; "
                                f"the limit is {self.max_request_tokens} "
                                "(SERVICE_MAX_REQUEST_TOKENS): send fewer or shorter texts, "
                                "or a smaller beam_size")
        if self.closing:
            raise Overloaded("the service is shutting down")
        queued = self.queued_sentences
        if queued + len(job.waiting) > self.max_queue_sentences:
            raise Overloaded(f"the queue holds {queued} sentences; the limit is "
                             f"{self.max_queue_sentences} (SERVICE_MAX_QUEUE_SENTENCES)")
        if job.waiting:
            self.queue.append(job)

    def admit(self, now: float) -> list[tuple[Job[Row], int]]:
        """The (job, row) pairs that join the running batch before the next step."""
        admitted: list[tuple[Job[Row], int]] = []
        for job in list(self.queue):
            while job.waiting and self._fits(job.costs[job.waiting[0]]):
                row = job.waiting.popleft()
                self.running_tokens += job.costs[row]
                self.running_sentences += 1
                job.running += 1
                job.started = job.started or now
                admitted.append((job, row))
            if not job.waiting:
                self.queue.remove(job)
            elif not job.running:  # it would starve if others kept filling the budget
                break
        return admitted

    def finished(self, job: Job[Row], row: int) -> None:
        """A running row is done (answered, failed or dropped): its budget is free again."""
        self.running_tokens -= job.costs[row]
        self.running_sentences -= 1
        job.running -= 1

    def withdraw(self, job: Job[Row]) -> None:
        """Forget the job's waiting rows (its client left or it timed out in the queue);
        its running rows are the worker's to drop."""
        job.waiting.clear()
        if job in self.queue:
            self.queue.remove(job)

    def _fits(self, cost: int) -> bool:
        if self.running_sentences >= self.max_batch_sentences:
            return False
        # An empty batch takes any sentence the request cap allows: nothing else could run.
        return not self.running_sentences or self.running_tokens + cost <= self.max_batch_tokens
