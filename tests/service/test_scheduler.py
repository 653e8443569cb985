"""Admission control without a model: budgets, backfilling, no starvation, limits."""

import pytest

from service.errors import LimitExceeded
from service.scheduler import Job, Overloaded, Scheduler


def job(*costs: int, at: float = 0.0) -> Job[str]:
    return Job([f"row{i}" for i in range(len(costs))], list(costs), at)


def scheduler(tokens: int = 100, sentences: int = 8, request: int = 1000,
              queue: int = 100) -> Scheduler[str]:
    return Scheduler(tokens, sentences, request, queue)


def test_sentences_join_in_order_within_the_token_budget() -> None:
    s = scheduler(tokens=100)
    a, b = job(40, 40, 40), job(10)
    s.submit(a)
    s.submit(b)
    # a's third row would exceed 100: it waits, and b (which fits) goes ahead of it
    assert s.admit(1.0) == [(a, 0), (a, 1), (b, 0)]
    assert s.running_tokens == 90 and a.started == b.started == 1.0
    assert s.admit(2.0) == []
    s.finished(a, 0)
    assert s.admit(3.0) == [(a, 2)]
    assert not s.idle and not s.queue


def test_a_request_behind_a_partly_running_one_backfills() -> None:
    s = scheduler(tokens=100)
    big, small = job(60, 60, 60), job(30)
    s.submit(big)
    s.submit(small)
    assert s.admit(0.0) == [(big, 0), (small, 0)]  # big runs partly; small uses the rest
    assert list(big.waiting) == [1, 2]


def test_a_request_with_nothing_running_is_not_starved_by_later_ones() -> None:
    s = scheduler(tokens=100)
    first = job(90)
    s.submit(first)
    s.admit(0.0)
    blocked, later = job(50), job(5)
    s.submit(blocked)
    s.submit(later)
    assert s.admit(1.0) == []  # `later` would fit, but `blocked` is older and has nothing running
    s.finished(first, 0)
    assert s.admit(2.0) == [(blocked, 0), (later, 0)]


def test_an_empty_batch_takes_a_sentence_over_the_budget() -> None:
    s = scheduler(tokens=100)
    huge = job(500)
    s.submit(huge)
    assert s.admit(0.0) == [(huge, 0)]


def test_running_sentences_are_capped() -> None:
    s = scheduler(sentences=2)
    a = job(1, 1, 1)
    s.submit(a)
    assert len(s.admit(0.0)) == 2 and s.running_sentences == 2


def test_limits_and_shutdown_refuse_with_the_setting_named() -> None:
    s = scheduler(request=100, queue=3)
    with pytest.raises(LimitExceeded, match="SERVICE_MAX_REQUEST_TOKENS"):
        s.submit(job(60, 60))
    s.submit(job(1, 1))
    with pytest.raises(Overloaded, match="SERVICE_MAX_QUEUE_SENTENCES"):
        s.submit(job(1, 1))
    s.closing = True
    with pytest.raises(Overloaded, match="shutting down"):
        s.submit(job(1))


def test_empty_texts_never_queue_and_withdrawn_rows_never_run() -> None:
    s = scheduler()
    empty = job(0, 0)
    s.submit(empty)
    assert not empty.waiting and not empty.running and s.idle
    gone = job(10, 10)
    s.submit(gone)
    s.withdraw(gone)
    assert s.admit(0.0) == [] and s.idle


def test_limits_are_inclusive_and_refusals_say_what_to_do() -> None:
    s = scheduler(request=100, queue=3)
    s.submit(job(50, 50))  # exactly the request cap
    with pytest.raises(LimitExceeded) as refused:
        s.submit(job(50, 51))
    assert str(refused.value) == (
        "the request costs 101 beam rows x source tokens; the limit is 100 "
        "(SERVICE_MAX_REQUEST_TOKENS): send fewer or shorter texts, or a smaller beam_size")
    s.submit(job(1))  # the queue is exactly full: 3 sentences
    with pytest.raises(Overloaded) as full:
        s.submit(job(1))
    assert str(full.value) == ("the queue holds 3 sentences; the limit is 3 "
                               "(SERVICE_MAX_QUEUE_SENTENCES)")
    s.closing = True
    with pytest.raises(Overloaded) as closing:
        s.submit(job(1))
    assert str(closing.value) == "the service is shutting down"


def test_a_sentence_that_exactly_fills_the_budget_joins() -> None:
    s = scheduler(tokens=100)
    a = job(60, 40, 1)
    s.submit(a)
    assert s.admit(0.0) == [(a, 0), (a, 1)] and s.running_tokens == 100


def test_counters_follow_each_admitted_and_finished_row() -> None:
    s = scheduler(tokens=100)
    a, b = job(10, 20, 30), job(5)
    s.submit(a)
    s.submit(b)
    s.admit(0.0)
    assert (a.running, b.running, s.running_sentences, s.running_tokens) == (3, 1, 4, 65)
    s.finished(a, 1)
    assert (a.running, s.running_sentences, s.running_tokens) == (2, 3, 45)
    s.finished(a, 0)
    s.finished(a, 2)
    assert not a.running and b.running and (s.running_sentences, s.running_tokens) == (1, 5)
    s.finished(b, 0)
    assert s.idle and s.running_tokens == 0


def test_withdrawing_a_waiting_request_leaves_the_others_queued() -> None:
    s = scheduler(sentences=1)
    running, waiting, other = job(1), job(1, 1), job(1)
    for j in (running, waiting, other):
        s.submit(j)
    assert s.admit(0.0) == [(running, 0)]
    s.withdraw(waiting)
    s.withdraw(running)  # no longer queued: nothing to remove, its row keeps running
    assert list(s.queue) == [other] and s.queued_sentences == 1
    s.finished(running, 0)
    assert s.admit(1.0) == [(other, 0)]


def simulate(s: Scheduler[str], arrivals: dict[int, list[Job[str]]], steps_of: dict[str, int]
             ) -> dict[int, int]:
    """Step a fake decoder: a row of cost c needs steps_of[row] steps; returns the step at
    which each job (by id) finished."""
    remaining: dict[tuple[int, int], int] = {}
    owners: dict[int, Job[str]] = {}
    done: dict[int, int] = {}
    step = 0
    while step < 1000 and (step <= max(arrivals) or not s.idle):
        for j in arrivals.get(step, []):
            s.submit(j)
            owners[id(j)] = j
        for j, row in s.admit(float(step)):
            remaining[id(j), row] = steps_of[j.rows[row]]
        step += 1
        for key in list(remaining):
            remaining[key] -= 1
            if not remaining[key]:
                del remaining[key]
                j = owners[key[0]]
                s.finished(j, key[1])
                if not j.waiting and not j.running:
                    done[key[0]] = step
    return done


def test_a_short_request_is_not_held_behind_a_heavy_one() -> None:
    # Budget 64 sentences; a heavy request of 32 long sentences (30 steps each) arrives
    # first, a 1-sentence request 5 steps later: it finishes 3 steps after arriving.
    s = scheduler(tokens=131_072, sentences=64, request=65_536)
    heavy = Job([f"long{i}" for i in range(32)], [1040] * 32, 0.0)
    short = Job(["short"], [16], 5.0)
    done = simulate(s, {0: [heavy], 5: [short]}, {**{f"long{i}": 30 for i in range(32)},
                                                 "short": 3})
    assert done[id(short)] == 5 + 3
    assert done[id(heavy)] == 30
