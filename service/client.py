"""A Python client for the service's HTTP API (httpx), synchronous and asynchronous.

    from service.client import Client

    with Client("http://localhost:8000", api_key="...") as client:
        result = client.translate(["Open the file", "Save as %s"], beam_size=4)
        print(result.translations[0].text, result.request_id)

Requests time out (``timeout``); 503 answers (overloaded, not ready, shutting down) and
connection failures are retried up to ``retries`` times, waiting what ``Retry-After`` says
or an exponential backoff with jitter; every other error raises :class:`TranslateError`
with the service's code, message and request id. Translating is idempotent, so a retried
request can do no harm.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_RETRY_AFTER_S = 30.0  # never sleep longer than this on a server's word


class TranslateError(Exception):
    """The service refused or failed a request (after the retries, for 503)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message} (request id {request_id})")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


@dataclass(frozen=True)
class Alternative:
    text: str
    score: float


@dataclass(frozen=True)
class AlignmentLink:
    source: int
    target: int
    source_word: str
    target_word: str
    weight: float


@dataclass(frozen=True)
class Translation:
    text: str
    score: float
    alternatives: list[Alternative] = field(default_factory=list)
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None
    attention: list[list[float]] | None = None  # target tokens x source tokens
    alignment: list[AlignmentLink] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Translation:
        return cls(
            text=data["text"], score=data["score"],
            alternatives=[Alternative(**a) for a in data.get("alternatives") or []],
            source_tokens=data.get("source_tokens"), target_tokens=data.get("target_tokens"),
            attention=data.get("attention"),
            alignment=None if data.get("alignment") is None
            else [AlignmentLink(**a) for a in data["alignment"]])


@dataclass(frozen=True)
class TranslateResult:
    model: str
    model_version: str
    translations: list[Translation]
    timing: dict[str, float]
    request_id: str | None


def _body(text: str | list[str], beam_size: int | None, n_best: int, max_length: int | None,
          return_attention: bool, return_alignment: bool, model: str | None,
          target: str | None, glossary: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, "n_best": n_best,
                            "return_attention": return_attention,
                            "return_alignment": return_alignment}
    if model is not None:
        body["model"] = model
    if target is not None:
        body["target"] = target
    if glossary:
        body["glossary"] = glossary
    if beam_size is not None:
        body["beam_size"] = beam_size
    if max_length is not None:
        body["max_length"] = max_length
    return body


def _headers(api_key: str | None, request_id: str) -> dict[str, str]:
    headers = {"X-Request-ID": request_id}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _error(response: httpx.Response) -> TranslateError:
    try:
        error = response.json()["error"]
        return TranslateError(response.status_code, error.get("code", "error"),
                              error.get("message", ""), error.get("request_id"))
    except (ValueError, KeyError, TypeError):
        return TranslateError(response.status_code, "http_error", response.text[:200],
                              response.headers.get("x-request-id"))


def _result(response: httpx.Response) -> TranslateResult:
    data = response.json()
    return TranslateResult(data["model"], data["model_version"],
                           [Translation.from_json(t) for t in data["translations"]],
                           data["timing"], response.headers.get("x-request-id"))


class _Retry:
    """When to retry and how long to wait first (shared by both clients)."""

    def __init__(self, retries: int, backoff_s: float) -> None:
        self.retries, self.backoff_s = retries, backoff_s

    def wait(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before another try, or None to stop."""
        if attempt >= self.retries:
            return None
        if response is not None:
            if response.status_code != 503:
                return None
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                return min(float(retry_after), MAX_RETRY_AFTER_S)
        return self.backoff_s * 2**attempt * (0.5 + random.random())


class Client:
    """Synchronous client. ``transport`` is for tests (e.g. ``httpx.MockTransport``)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._api_key, self._retry, self._sleep = api_key, _Retry(retries, backoff_s), sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def translate(self, text: str | list[str], *, beam_size: int | None = None, n_best: int = 1,
                  max_length: int | None = None, return_attention: bool = False,
                  return_alignment: bool = False, request_id: str | None = None,
                  model: str | None = None, target: str | None = None,
                  glossary: dict[str, str] | None = None) -> TranslateResult:
        """``model`` (an id of ``models()``) or ``target`` (a language code) choose the
        model; neither: the service's default model. ``glossary``: source -> target terms."""
        body = _body(text, beam_size, n_best, max_length, return_attention, return_alignment,
                     model, target, glossary)
        return _result(self._request("POST", "/translate", body, request_id))

    def model(self, model: str | None = None) -> dict[str, Any]:
        """``GET /models/{model}``, or ``GET /model`` (the default model)."""
        path = f"/models/{model}" if model else "/model"
        info: dict[str, Any] = self._request("GET", path, None, None).json()
        return info

    def models(self) -> list[dict[str, Any]]:
        """``GET /models``: every model the service holds, with its state."""
        listed: list[dict[str, Any]] = self._request("GET", "/models", None, None).json()[
            "models"]
        return listed

    def ready(self) -> bool:
        try:
            return self._http.get("/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def _request(self, method: str, path: str, body: dict[str, Any] | None,
                 request_id: str | None) -> httpx.Response:
        headers = _headers(self._api_key, request_id or uuid.uuid4().hex)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=body, headers=headers)
                if response.is_success:
                    return response
                wait = self._retry.wait(attempt, response)
                if wait is None:
                    raise _error(response)
            except httpx.TransportError:
                wait = self._retry.wait(attempt, None)
                if wait is None:
                    raise
            self._sleep(wait)
            attempt += 1


class AsyncClient:
    """Asynchronous client; the same behaviour as :class:`Client`."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._api_key, self._retry = api_key, _Retry(retries, backoff_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def translate(self, text: str | list[str], *, beam_size: int | None = None,
                        n_best: int = 1, max_length: int | None = None,
                        return_attention: bool = False, return_alignment: bool = False,
                        request_id: str | None = None, model: str | None = None,
                        target: str | None = None,
                        glossary: dict[str, str] | None = None) -> TranslateResult:
        body = _body(text, beam_size, n_best, max_length, return_attention, return_alignment,
                     model, target, glossary)
        return _result(await self._request("POST", "/translate", body, request_id))

    async def _request(self, method: str, path: str, body: dict[str, Any] | None,
                       request_id: str | None) -> httpx.Response:
        headers = _headers(self._api_key, request_id or uuid.uuid4().hex)
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, json=body, headers=headers)
                if response.is_success:
                    return response
                wait = self._retry.wait(attempt, response)
                if wait is None:
                    raise _error(response)
            except httpx.TransportError:
                wait = self._retry.wait(attempt, None)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1
