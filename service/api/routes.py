"""The native HTTP routes: validate, translate through :mod:`service.api.translation`,
return a typed response."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import paths
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
from service.api.translation import StateDep, resolve_options, translate_texts
from service.bundle import MODEL_CARD
from service.errors import NotReady
from service.translator import Translation, Translator

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 422, 500, 503)}


@router.post(paths.TRANSLATE, response_model=TranslateResponse, response_model_exclude_none=True,
             responses=ERRORS, tags=["translate"])
async def translate(body: TranslateRequest, state: StateDep, request: Request
                    ) -> TranslateResponse:
    """Translate one text or a list of texts (a batch)."""
    started = time.perf_counter()
    options = resolve_options(state.settings, beam_size=body.beam_size, n_best=body.n_best,
                              max_length=body.max_length,
                              attention=body.return_attention or body.return_alignment)
    translator, result = await translate_texts(request, state, body.texts, options)
    outputs = [to_output(translator, t, body) for t in result.translations]
    timing = Timing(total_ms=round(1000 * (time.perf_counter() - started), 2),
                    queue_ms=round(1000 * result.queue_seconds, 2),
                    decode_ms=round(1000 * result.decode_seconds, 2),
                    encode_ms=round(1000 * result.encode_seconds, 2),
                    batch_size=result.batch_sentences)
    return TranslateResponse(model=translator.manifest.model_id, translations=outputs,
                             timing=timing)


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


@router.get(paths.LIVE, response_model=Health, response_model_exclude_none=True,
            tags=["health"])
async def live() -> Health:
    """The process is up and serving HTTP."""
    return Health(status="ok")


@router.get(paths.READY, response_model=Health, response_model_exclude_none=True,
            responses={503: {"model": ErrorResponse}},
            tags=["health"])
async def ready(state: StateDep) -> Health:
    """The model is loaded and warmed up (503 otherwise)."""
    if not state.ready:
        raise NotReady(f"service not ready: {state.detail}")
    return Health(status="ready")


@router.get(paths.METRICS, tags=["health"], response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(paths.MODEL, response_model=ModelInfo, responses=ERRORS, tags=["model"])
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
