"""The translate path every API surface shares (the native ``/translate`` and LibreTranslate's):
decoding options resolved and validated once, limits checked, texts decoded in the shared
running batch, dropped if the client disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from service.batcher import BatchResult
from service.errors import (
    ClientGone,
    DecodeFailed,
    InvalidOption,
    LimitExceeded,
    NotReady,
    ServiceError,
)
from service.glossary import Glossary, GlossaryError
from service.settings import Settings
from service.state import Model, ServiceState
from service.translator import DecodeOptions, InputTooLong

T = TypeVar("T")


async def get_state(request: Request) -> ServiceState:
    """``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on
    every request (8 % of the event loop's time at 500 requests/s)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def resolve_options(settings: Settings, *, beam_size: int | None = None, n_best: int = 1,
                    max_length: int | None = None, attention: bool = False) -> DecodeOptions:
    """What a request asked, with the service's settings filled in and checked (the only
    place that does): no beam means ``SERVICE_DEFAULT_BEAM_SIZE``, widened to ``n_best``;
    the length penalty and ratio are the settings' (None: the bundle's)."""
    beam = beam_size or max(settings.default_beam_size, n_best)
    if beam > settings.max_beam_size:
        raise InvalidOption(f"beam_size {beam} exceeds the limit {settings.max_beam_size} "
                            "(SERVICE_MAX_BEAM_SIZE)")
    if n_best > beam:
        raise InvalidOption(f"n_best {n_best} must not exceed beam_size {beam}")
    return DecodeOptions(beam_size=beam, n_best=n_best, length_penalty=settings.length_penalty,
                         max_length_ratio=settings.max_length_ratio, max_length=max_length,
                         attention=attention,
                         fallback_beam=settings.glossary_fallback_beam or None)


def check_limits(texts: list[str], settings: Settings) -> None:
    if not texts:
        raise InvalidOption("text: the list is empty; send at least one text")
    if len(texts) > settings.max_texts:
        raise LimitExceeded(f"{len(texts)} texts in one request; the limit is "
                            f"{settings.max_texts} (SERVICE_MAX_TEXTS)")
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise LimitExceeded(f"text {i} has {len(text)} characters; the limit is "
                                f"{settings.max_text_chars} (SERVICE_MAX_TEXT_CHARS)")


async def translate_texts(request: Request, model: Model, settings: Settings,
                          texts: list[str], options: DecodeOptions,
                          glossary: Glossary | None = None) -> BatchResult:
    """Check, tokenize and decode ``texts`` (the search must emit their ``glossary`` terms:
    ``SERVICE_GLOSSARY_METHOD``, ``SERVICE_GLOSSARY_MODEL_FIRST``) in ``model``'s running
    batch; dropped if the client disconnects."""
    translator, batcher = model.translator, model.batcher
    if translator is None or batcher is None:
        raise NotReady(f"model {model.id} is {model.state.value}")
    check_limits(texts, settings)
    # dynamic beam allocation needs a beam: greedy decoding masks the terms
    method = "mask" if options.beam_size == 1 else settings.glossary_method
    try:
        rows = translator.prepare(texts, settings.max_input_tokens, glossary, method,
                                  settings.glossary_model_first)
    except GlossaryError as exc:
        raise InvalidOption(str(exc)) from exc
    except InputTooLong as exc:
        raise LimitExceeded(f"{exc} (SERVICE_MAX_INPUT_TOKENS)") from exc
    try:
        return await until_disconnected(request, batcher.submit(rows, options))
    except ServiceError:  # busy, over the cost cap: the client's to know
        raise
    except Exception as exc:
        raise DecodeFailed(f"decoding failed ({type(exc).__name__}); the server keeps "
                           "serving, retry or report the request_id") from exc


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, cancelling it (its queued and running sentences are dropped) if the
    client closes the connection first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise ClientGone("the client closed the connection; its sentences were dropped")
    return task.result()


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
