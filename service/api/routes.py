"""HTTP routes: validate, call the batcher, return a typed response."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.alignment import align
from service.api.schemas import (
    AlignmentLink,
    Alternative,
    ErrorResponse,
    Health,
    ModelInfo,
    Timing,
    TranslateRequest,
    TranslateResponse,
    TranslationOut,
)
from service.batcher import Batcher, BatchResult
from service.bundle import MODEL_CARD
from service.errors import (
    ClientGone,
    DecodeFailed,
    InvalidOption,
    LimitExceeded,
    NotReady,
    ServiceError,
)
from service.settings import Settings
from service.state import ServiceState
from service.translator import DecodeOptions, InputTooLong, Translation, Translator

T = TypeVar("T")


async def get_state(request: Request) -> ServiceState:
    """``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on
    every request (8 % of the event loop's time at 500 requests/s)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 422, 500, 503)}


@router.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True,
             responses=ERRORS, tags=["translate"])
async def translate(body: TranslateRequest, state: StateDep, request: Request
                    ) -> TranslateResponse:
    """Translate one text or a list of texts (a batch)."""
    started = time.perf_counter()
    translator, batcher = state.require_ready()
    texts, settings = body.texts, state.settings
    options = decode_options(body, settings)
    check_limits(texts, settings)
    result = await decode(request, translator, batcher, texts, options, settings)
    outputs = [to_output(translator, t, body) for t in result.translations]
    timing = Timing(total_ms=round(1000 * (time.perf_counter() - started), 2),
                    queue_ms=round(1000 * result.queue_seconds, 2),
                    decode_ms=round(1000 * result.decode_seconds, 2),
                    encode_ms=round(1000 * result.encode_seconds, 2),
                    batch_size=result.batch_sentences)
    return TranslateResponse(model=translator.manifest.model_id, translations=outputs,
                             timing=timing)


async def decode(request: Request, translator: Translator, batcher: Batcher, texts: list[str],
                 options: DecodeOptions, settings: Settings) -> BatchResult:
    """Tokenize ``texts`` and decode them in the shared running batch (every API surface
    translates through here); dropped if the client disconnects first."""
    try:
        rows = translator.prepare(texts, settings.max_input_tokens)
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


def decode_options(body: TranslateRequest, settings: Settings) -> DecodeOptions:
    beam = body.beam_size or settings.default_beam_size
    if beam > settings.max_beam_size:
        raise InvalidOption(f"beam_size {beam} exceeds the limit {settings.max_beam_size} "
                            "(SERVICE_MAX_BEAM_SIZE)")
    if body.n_best > beam:
        raise InvalidOption(f"n_best {body.n_best} must not exceed beam_size {beam}")
    return DecodeOptions(beam_size=beam, n_best=body.n_best,
                         length_penalty=settings.length_penalty,
                         max_length_ratio=settings.max_length_ratio, max_length=body.max_length,
                         attention=body.return_attention or body.return_alignment)


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


def to_output(translator: Translator, t: Translation, body: TranslateRequest) -> TranslationOut:
    best = t.best
    out = TranslationOut(text=best.text, score=round(best.score, 4))
    if body.n_best > 1:
        out.alternatives = [Alternative(text=c.text, score=round(c.score, 4))
                            for c in t.candidates]
    if body.return_attention or body.return_alignment:
        source, target, weights = translator.attention_of(t)
        if body.return_attention:
            out.source_tokens, out.target_tokens = source, target
            out.attention = np.round(weights.astype(np.float64), 4).tolist()
        if body.return_alignment:
            out.alignment = [AlignmentLink(**vars(link))
                             for link in align(source, target, weights)]
    return out


@router.get("/health/live", response_model=Health, response_model_exclude_none=True,
            tags=["health"])
async def live() -> Health:
    """The process is up and serving HTTP."""
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, response_model_exclude_none=True,
            responses={503: {"model": ErrorResponse}},
            tags=["health"])
async def ready(state: StateDep) -> Health:
    """The model is loaded and warmed up (503 otherwise)."""
    if not state.ready:
        raise NotReady(f"service not ready: {state.detail}")
    return Health(status="ready")


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", response_model=ModelInfo, responses=ERRORS, tags=["model"])
async def model(state: StateDep) -> ModelInfo:
    """The served model: manifest summary, test metrics and model card."""
    translator, _ = state.require_ready()
    m = translator.manifest
    card = translator.bundle_dir / MODEL_CARD
    return ModelInfo(
        model_id=m.model_id, source_lang=m.source_lang, target_lang=m.target_lang,
        variant=translator.model.variant, provider=translator.model.provider,
        architecture=vars(m.architecture), max_source_tokens=m.max_source_tokens,
        metrics=m.metrics, parity=m.parity, training=m.training,
        shortlist=translator.shortlist is not None,
        shortlist_quality=m.shortlist.quality if m.shortlist else None,
        model_card=card.read_text(encoding="utf-8") if card.is_file() else None)
