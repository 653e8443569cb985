"""Batching against a scripted server: 413 shrinks the batch, 429 waits, the rest raises."""

from __future__ import annotations

import json

import httpx
import pytest

from service.client import Client, TranslateError
from service.glossary import MAX_ENTRIES, Glossary
from service.po.batches import translate_all


def server(max_texts: int, refuse: frozenset[str] = frozenset(), busy: int = 0
           ) -> tuple[httpx.MockTransport, list[list[str]]]:
    """Answers like the service: 413 above ``max_texts`` or for a text in ``refuse``, 429 for
    the first ``busy`` requests; translates by upper-casing."""
    seen: list[list[str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["text"]
        seen.append(texts)
        if len(seen) <= busy:
            return httpx.Response(429, json={"error": {"code": "busy", "message": "slow down"}})
        if len(texts) > max_texts or refuse & set(texts):
            return httpx.Response(413, json={"error": {"code": "too_large",
                                                       "message": "over the limit"}})
        return httpx.Response(200, json={"model": "m", "model_version": "1", "timing": {},
                                         "translations": [{"text": t.upper(), "score": 0}
                                                          for t in texts]})

    return httpx.MockTransport(handle), seen


def test_413_halves_the_batch_until_the_server_accepts_it() -> None:
    transport, seen = server(max_texts=3)
    done: list[int] = []
    with Client("http://svc", transport=transport) as client:
        outcome = translate_all(client, [f"t{i}" for i in range(10)] + ["t0"], batch_size=8,
                                progress=done.append)
    assert outcome.translations == {f"t{i}": f"T{i}" for i in range(10)}  # t0 sent once
    assert [len(b) for b in seen] == [8, 4, 2, 2, 2, 2, 2]
    assert sum(done) == 10 and outcome.requests == 7 and not outcome.refused


def test_a_text_refused_on_its_own_is_reported_and_the_rest_translated() -> None:
    transport, _ = server(max_texts=64, refuse=frozenset({"long"}))
    with Client("http://svc", transport=transport) as client:
        outcome = translate_all(client, ["a", "long", "b"], batch_size=4)
    assert outcome.refused == {"long": "over the limit"}
    assert outcome.translations == {"a": "A", "b": "B"}


def test_429_waits_longer_each_time_then_carries_on() -> None:
    transport, seen = server(max_texts=64, busy=2)
    slept: list[float] = []
    with Client("http://svc", transport=transport) as client:
        outcome = translate_all(client, ["a", "b", "c", "d"], batch_size=4, sleep=slept.append)
    assert slept == [0.5, 1.0] and [len(b) for b in seen] == [4, 2, 1, 1, 1, 1]
    assert outcome.translations == {"a": "A", "b": "B", "c": "C", "d": "D"}


def test_other_refusals_raise() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "key"}})

    with Client("http://svc", transport=httpx.MockTransport(handle)) as client, \
            pytest.raises(TranslateError, match="401"):
        translate_all(client, ["a"])


def test_each_request_carries_the_glossary_terms_its_texts_hold_within_the_limit() -> None:
    bodies: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(200, json={"model": "m", "model_version": "1", "timing": {},
                                         "translations": [{"text": t, "score": 0}
                                                          for t in body["text"]]})

    glossary = Glossary({f"term{i}": f"Begriff{i}" for i in range(400)}, 1000)
    texts = [f"term{2 * i} and term{2 * i + 1}" for i in range(200)] + ["no terms here"]
    with Client("http://svc", transport=httpx.MockTransport(handle)) as client:
        outcome = translate_all(client, texts, batch_size=256, glossary=glossary)
    assert len(outcome.translations) == len(texts)
    sent = [body.get("glossary", {}) for body in bodies]
    # 201 texts hold 400 terms, over the limit: 100 texts (200 terms), then the other 101
    assert [len(body["text"]) for body in bodies] == [100, 101]  # type: ignore[arg-type]
    assert all(len(g) <= MAX_ENTRIES for g in sent)
    assert sent[0] == {f"term{i}": f"Begriff{i}" for i in range(200)}
    assert sent[1] == {f"term{i}": f"Begriff{i}" for i in range(200, 400)}
