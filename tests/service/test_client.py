"""The Python client against a scripted transport: retries, Retry-After, errors, typing."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from service.client import AsyncClient, Client, TranslateError

OK = {"model": "m", "model_version": "1", "timing": {"total_ms": 1.0},
      "translations": [{"text": "Datei öffnen", "score": -0.5,
                        "alternatives": [{"text": "Datei öffnen", "score": -0.5}],
                        "source_tokens": ["▁Open", "</s>"], "target_tokens": ["▁Datei", "</s>"],
                        "attention": [[0.9, 0.1], [0.2, 0.8]],
                        "alignment": [{"source": 0, "target": 0, "source_word": "Open",
                                       "target_word": "Datei", "weight": 0.9}]}]}


def scripted(*answers: tuple[int, dict[str, str], object]) -> tuple[httpx.MockTransport,
                                                                    list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers, body = queue.pop(0)
        if isinstance(body, Exception):
            raise body
        return httpx.Response(status, headers=headers, json=body)

    return httpx.MockTransport(handle), seen


def busy(retry_after: str) -> tuple[int, dict[str, str], object]:
    return 503, {"Retry-After": retry_after}, {"error": {"code": "overloaded", "message": "q",
                                                          "request_id": "r"}}


def test_retries_503_honouring_retry_after_then_returns_typed_results() -> None:
    transport, seen = scripted(busy("2"), busy("1"), (200, {"X-Request-ID": "abc"}, OK))
    slept: list[float] = []
    with Client("http://svc", api_key="k", transport=transport, sleep=slept.append) as client:
        result = client.translate("Open", beam_size=4, return_attention=True, request_id="abc")
    assert slept == [2.0, 1.0] and len(seen) == 3
    assert all(r.headers["authorization"] == "Bearer k" for r in seen)
    assert {r.headers["x-request-id"] for r in seen} == {"abc"}  # one id for every try
    assert json.loads(seen[0].content) == {"text": "Open", "beam_size": 4, "n_best": 1,
                                           "return_attention": True, "return_alignment": False}
    [t] = result.translations
    assert t.text == "Datei öffnen" and t.attention == [[0.9, 0.1], [0.2, 0.8]]
    assert t.alignment is not None and t.alignment[0].target_word == "Datei"
    assert result.request_id == "abc"


def test_gives_up_after_the_retries_and_raises_the_service_error() -> None:
    transport, seen = scripted(*[busy("0")] * 3)
    client = Client("http://svc", transport=transport, retries=2, sleep=lambda _: None)
    with client, pytest.raises(TranslateError) as error:
        client.translate("Open")
    assert len(seen) == 3 and error.value.status == 503 and error.value.code == "overloaded"


def test_client_errors_are_not_retried() -> None:
    transport, seen = scripted((413, {}, {"error": {"code": "limit_exceeded", "request_id": "x",
                                                    "message": "text 0 has 9 characters"}}))
    client = Client("http://svc", transport=transport, sleep=lambda _: None)
    with client, pytest.raises(TranslateError, match="limit_exceeded: text 0 has 9 characters"):
        client.translate("Open")
    assert len(seen) == 1


def test_connection_errors_are_retried_with_backoff() -> None:
    transport, seen = scripted((0, {}, httpx.ConnectError("refused")), (200, {}, OK))
    slept: list[float] = []
    with Client("http://svc", transport=transport, backoff_s=0.2, sleep=slept.append) as client:
        assert client.translate("Open").translations[0].text == "Datei öffnen"
    assert len(seen) == 2 and 0.1 <= slept[0] <= 0.3


def test_async_client_behaves_alike() -> None:
    transport, seen = scripted(busy("0"), (200, {}, OK))

    async def run() -> str:
        async with AsyncClient("http://svc", transport=transport) as client:
            return (await client.translate(["Open"])).translations[0].text

    assert asyncio.run(run()) == "Datei öffnen" and len(seen) == 2
