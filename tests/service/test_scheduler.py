"""Admission control without a model: budgets, backfilling, no starvation, limits."""

import pytest

from service.errors import LimitExceeded
from service.scheduler import (
    ADMIT_TOGETHER,
    ADMIT_WAIT_S,
    SMALL_BATCH,
    Job,
    Overloaded,
    Scheduler,
    Sentence,
    Status,
)

J = Job[str, None]


def job(*costs: int, at: float = 0.0) -> J:
    return Job([f"row{i}" for i in range(len(costs))], list(costs), None, at)


def scheduler(tokens: int = 100, sentences: int = 8, request: int = 1000,
              queue: int = 100, wait: float = 0.0) -> Scheduler[str, None]:
    return Scheduler(tokens, sentences, request, queue, admit_wait_s=wait)


def rows(admitted: list[Sentence[str, None]]) -> list[tuple[J, int]]:
    return [(s.job, s.row) for s in admitted]


def finish(s: Scheduler[str, None], j: J, row: int) -> None:
    [sentence] = [x for x in j.sentences if x.row == row]
    s.finished(sentence)


def test_sentences_join_in_order_within_the_token_budget() -> None:
    s = scheduler(tokens=100)
    a, b = job(40, 40, 40), job(10)
    s.submit(a)
    s.submit(b)
    # a's third row would exceed 100: it waits, and b (which fits) goes ahead of it
    assert rows(s.admit(1.0)) == [(a, 0), (a, 1), (b, 0)]
    assert s.running_tokens == 90 and a.started == b.started == 1.0
    assert rows(s.admit(2.0)) == []
    finish(s, a, 0)
    assert rows(s.admit(3.0)) == [(a, 2)]
    assert not s.idle and not s.queue


def test_a_request_behind_a_partly_running_one_backfills() -> None:
    s = scheduler(tokens=100)
    big, small = job(60, 60, 60), job(30)
    s.submit(big)
    s.submit(small)
    assert rows(s.admit(0.0)) == [(big, 0), (small, 0)]  # big runs partly; small uses the rest
    assert [x.row for x in big.waiting] == [1, 2]


def test_a_request_with_nothing_running_is_not_starved_by_later_ones() -> None:
    s = scheduler(tokens=100)
    first = job(90)
    s.submit(first)
    s.admit(0.0)
    blocked, later = job(50), job(5)
    s.submit(blocked)
    s.submit(later)
    assert s.admit(1.0) == []  # `later` would fit, but `blocked` is older and has nothing running
    finish(s, first, 0)
    assert rows(s.admit(2.0)) == [(blocked, 0), (later, 0)]


def test_an_empty_batch_takes_a_sentence_over_the_budget() -> None:
    s = scheduler(tokens=100)
    huge = job(500)
    s.submit(huge)
    assert rows(s.admit(0.0)) == [(huge, 0)]


def test_running_sentences_are_capped() -> None:
    s = scheduler(sentences=2)
    a = job(1, 1, 1)
    s.submit(a)
    assert len(s.admit(0.0)) == 2 and s.running_sentences == 2


def test_a_request_holding_every_place_leaves_newcomers_an_eighth_more() -> None:
    s = scheduler(tokens=10_000, sentences=64)
    heavy, light, two = job(*[1] * 64), job(1), job(1, 1)
    s.submit(heavy)
    assert len(s.admit(0.0)) == 64
    s.submit(light)
    s.submit(two)
    # each newcomer starts one sentence; the rest waits for a place
    assert rows(s.admit(1.0)) == [(light, 0), (two, 0)] and s.running_sentences == 66
    finish(s, heavy, 0)
    finish(s, heavy, 1)
    assert rows(s.admit(2.0)) == []  # 64 running
    finish(s, heavy, 2)
    assert rows(s.admit(3.0)) == [(two, 1)]
    full = scheduler(tokens=10_000, sentences=64, queue=200)
    jobs = [job(*[1] * 8) for _ in range(17)]
    for j in jobs:
        full.submit(j)
    assert len(full.admit(0.0)) == 72  # eight jobs fill the places, eight more start one
    assert [j.running for j in jobs] == [8] * 8 + [1] * 8 + [0]
    small = scheduler(sentences=4)  # under 8 places, no more
    small.submit(job(1, 1, 1, 1))
    small.submit(job(1))
    assert len(small.admit(0.0)) == 4


def test_a_sentence_decoded_again_waits_first_with_its_new_data() -> None:
    s = scheduler(sentences=2)
    a, b = job(1, 1), job(1)
    s.submit(a)
    s.submit(b)
    assert rows(s.admit(0.0)) == [(a, 0), (a, 1)]
    first = a.sentences[0]
    s.redo(first, "row0, terms enforced")
    assert first.status is Status.WAITING and first.data == "row0, terms enforced"
    assert s.running_sentences == 1 and list(s.queue) == [a, b]
    assert rows(s.admit(1.0)) == [(a, 0)] and a.started == 0.0  # ahead of b
    s.finished(first)
    assert first.status is Status.FINISHED and first.data == "row0, terms enforced"


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
    assert rows(s.admit(0.0)) == [] and s.idle


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
    assert str(closing.value) == ("no longer taking requests: the model is unloading or the "
                                   "service is shutting down")


def test_a_sentence_that_exactly_fills_the_budget_joins() -> None:
    s = scheduler(tokens=100)
    a = job(60, 40, 1)
    s.submit(a)
    assert rows(s.admit(0.0)) == [(a, 0), (a, 1)] and s.running_tokens == 100


def test_counters_follow_each_admitted_and_finished_row() -> None:
    s = scheduler(tokens=100)
    a, b = job(10, 20, 30), job(5)
    s.submit(a)
    s.submit(b)
    s.admit(0.0)
    assert (a.running, b.running, s.running_sentences, s.running_tokens) == (3, 1, 4, 65)
    finish(s, a, 1)
    assert (a.running, s.running_sentences, s.running_tokens) == (2, 3, 45)
    finish(s, a, 0)
    finish(s, a, 2)
    assert not a.running and b.running and (s.running_sentences, s.running_tokens) == (1, 5)
    finish(s, b, 0)
    assert s.idle and s.running_tokens == 0


def test_withdrawing_a_waiting_request_leaves_the_others_queued() -> None:
    s = scheduler(sentences=1)
    running, waiting, other = job(1), job(1, 1), job(1)
    for j in (running, waiting, other):
        s.submit(j)
    assert rows(s.admit(0.0)) == [(running, 0)]
    s.withdraw(waiting)
    s.withdraw(running)  # no longer queued: nothing to remove, its row keeps running
    assert list(s.queue) == [other] and s.queued_sentences == 1
    finish(s, running, 0)
    assert rows(s.admit(1.0)) == [(other, 0)]


def simulate(s: Scheduler[str, None], arrivals: dict[int, list[J]], steps_of: dict[str, int]
             ) -> dict[int, int]:
    """Step a fake decoder: a row of cost c needs steps_of[row] steps; returns the step at
    which each job (by id) finished."""
    remaining: dict[tuple[int, int], int] = {}
    owners: dict[int, J] = {}
    done: dict[int, int] = {}
    step = 0
    while step < 1000 and (step <= max(arrivals) or not s.idle):
        for j in arrivals.get(step, []):
            s.submit(j)
            owners[id(j)] = j
        for j, row in rows(s.admit(float(step))):
            remaining[id(j), row] = steps_of[j.rows[row]]
        step += 1
        for key in list(remaining):
            remaining[key] -= 1
            if not remaining[key]:
                del remaining[key]
                j = owners[key[0]]
                finish(s, j, key[1])
                if not j.waiting and not j.running:
                    done[key[0]] = step
    return done


def test_a_short_request_is_not_held_behind_a_heavy_one() -> None:
    # Budget 64 sentences; a heavy request of 32 long sentences (30 steps each) arrives
    # first, a 1-sentence request 5 steps later: it finishes 3 steps after arriving.
    s = scheduler(tokens=131_072, sentences=64, request=65_536)
    heavy: J = Job([f"long{i}" for i in range(32)], [1040] * 32, None, 0.0)
    short: J = Job(["short"], [16], None, 5.0)
    done = simulate(s, {0: [heavy], 5: [short]}, {**{f"long{i}": 30 for i in range(32)},
                                                 "short": 3})
    assert done[id(short)] == 5 + 3
    assert done[id(heavy)] == 30


def test_each_sentence_record_goes_waiting_running_finished_with_a_reason() -> None:
    s = scheduler(sentences=1)
    a = job(5, 0, 7)  # the empty text (cost 0) gets no record
    s.submit(a)
    first, second = a.sentences
    assert (first.row, second.row) == (0, 2) and a.started is None
    assert [x.status for x in a.sentences] == [Status.WAITING] * 2
    assert s.admit(3.0) == [first] and first.status is Status.RUNNING and a.started == 3.0
    s.finished(first)
    assert (first.status, first.reason) == (Status.FINISHED, "done")
    assert s.admit(4.0) == [second] and a.started == 3.0
    s.finished(second, Status.FINISHED, "failed: RuntimeError")
    assert second.reason == "failed: RuntimeError" and s.idle
    with pytest.raises(AssertionError):  # a record finishes once
        s.finished(second)


def test_withdrawing_drops_waiting_sentences_now_and_hands_running_ones_to_the_worker() -> None:
    s = scheduler(sentences=2)
    a = job(1, 1, 1)
    s.submit(a)
    running = s.admit(0.0)
    s.withdraw(a)
    assert a.cancelled and a.sentences[2].status is Status.DROPPED
    assert a.sentences[2].reason == "withdrawn" and not s.queue
    assert s.take_withdrawn() == running and s.take_withdrawn() == []  # handed over once
    for x in running:
        s.finished(x, Status.DROPPED, "withdrawn")
    assert s.idle and s.running_tokens == 0
    b = job(1)
    s.submit(b)
    s.withdraw(b)  # nothing running: nothing for the worker
    assert s.take_withdrawn() == [] and b.sentences[0].status is Status.DROPPED


def test_a_large_batch_admits_newcomers_together_or_after_the_wait() -> None:
    s = scheduler(tokens=10_000, sentences=64, wait=ADMIT_WAIT_S)
    s.submit(job(*[1] * SMALL_BATCH, at=0.0))
    assert len(s.admit(0.0)) == SMALL_BATCH  # a small batch admits at once
    s.submit(job(1, at=1.0))
    assert s.admit(1.0) == []  # one newcomer waits for company...
    assert len(s.admit(1.0 + ADMIT_WAIT_S)) == 1  # ...but not longer than ADMIT_WAIT_S
    s.submit(job(*[1] * ADMIT_TOGETHER, at=2.0))
    assert len(s.admit(2.0)) == ADMIT_TOGETHER  # enough of them: at once
