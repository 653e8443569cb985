"""The native HTTP routes: validate, translate through :mod:`service.api.translation`,
return a typed response."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service import paths
from service.alignment import align
from service.api.middleware import presented_key
from service.api.schemas import (
    AlignmentLink,
    Alternative,
    AppliedTermOut,
    ErrorResponse,
    GlossaryInfo,
    GlossaryList,
    Health,
    ModelInfo,
    ModelList,
    ModelSummary,
    Timing,
    TranslateRequest,
    TranslateResponse,
    TranslationOut,
)
from service.api.translation import StateDep, resolve_options, translate_texts
from service.auth import check_key
from service.bundle import MODEL_CARD
from service.errors import Forbidden, InvalidOption, NotReady
from service.repository import RepositoryError
from service.state import Model, ServiceState
from service.translator import Translation, Translator
from service.workers import unready_workers

router = APIRouter()
UNLOADED = "unloaded"  # an on-demand model of the repository, not loaded now
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 422, 500, 503)}


@router.post(paths.TRANSLATE, response_model=TranslateResponse, response_model_exclude_none=True,
             responses=ERRORS, tags=["translate"])
async def translate(body: TranslateRequest, state: StateDep, request: Request
                    ) -> TranslateResponse:
    """Translate one text or a list of texts (a batch) with the model named, the one
    serving the language pair given, or the default model."""
    started = time.perf_counter()
    options = resolve_options(state.settings, beam_size=body.beam_size, n_best=body.n_best,
                              max_length=body.max_length,
                              attention=body.return_attention or body.return_alignment)
    model = await state.acquire(body.model, body.source, body.target)
    translator = model.translator
    glossary = state.glossary_for(model, body.glossary_id, body.glossary)
    result = await translate_texts(request, model, state.settings, body.texts, options,
                                   glossary)
    assert translator is not None
    outputs = [to_output(translator, t, body, glossary is not None)
               for t in result.translations]
    timing = Timing(total_ms=round(1000 * (time.perf_counter() - started), 2),
                    queue_ms=round(1000 * result.queue_seconds, 2),
                    decode_ms=round(1000 * result.decode_seconds, 2),
                    encode_ms=round(1000 * result.encode_seconds, 2),
                    batch_size=result.batch_sentences)
    return TranslateResponse(model=model.id, model_version=model.version,
                             translations=outputs, timing=timing)


def to_output(translator: Translator, t: Translation, body: TranslateRequest,
              terms: bool = False) -> TranslationOut:
    best = t.best
    out = TranslationOut(text=best.text, score=round(best.score, 4))
    if body.n_best > 1:
        out.alternatives = [Alternative(text=c.text, score=round(c.score, 4))
                            for c in t.candidates]
    if terms:
        out.terms = [AppliedTermOut(source=a.source, target=a.target,
                                    source_start=a.source_span[0], source_end=a.source_span[1],
                                    target_start=a.target_span[0], target_end=a.target_span[1])
                     for a in best.terms]
    if body.return_attention or body.return_alignment:
        source, target, weights = translator.attention_of(t)
        if body.return_attention:
            out.source_tokens, out.target_tokens = source, target
            out.attention = np.round(weights.astype(np.float64), 4).tolist()
        if body.return_alignment:
            known = translator.term_pieces(t)  # a term's place is known, not guessed
            out.alignment = [AlignmentLink(**vars(link))
                             for link in align(source, target, weights, known)]
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
    """Every model loaded at start is loaded and warmed up (503 otherwise); the body gives
    each model's state."""
    if not state.ready:
        raise NotReady(f"service not ready: {state.detail}")
    if waiting := unready_workers(state.settings.workers):
        raise NotReady(f"service not ready: worker(s) {', '.join(map(str, waiting))} of "
                       "SERVICE_WORKERS not serving yet")
    return Health(status="ready", models={m.id: m.state.value for m in state.models.values()})


@router.get(paths.METRICS, tags=["health"], response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get(paths.MODEL, response_model=ModelInfo, responses=ERRORS, tags=["model"])
async def model(state: StateDep) -> ModelInfo:
    """The default model: manifest summary, test metrics and model card."""
    return model_info(state.model_for())


@router.get(paths.GLOSSARIES, response_model=GlossaryList, tags=["translate"])
async def glossaries(state: StateDep) -> GlossaryList:
    """The named glossaries (SERVICE_GLOSSARY_DIR), by language pair."""
    return GlossaryList(glossaries=[
        GlossaryInfo(id=g.id, source=g.source, target=g.target, entries=len(g.glossary),
                     default=g.default)
        for named in state.glossaries.values() for g in named.values()])


@router.get(paths.MODELS, response_model=ModelList, response_model_exclude_none=True,
            tags=["model"])
async def models(state: StateDep) -> ModelList:
    """Every model the service holds, with its state, and the on-demand models of the
    repository not loaded now (state ``unloaded``: they load at their first request)."""
    default = state.settings.default_model if len(state.models) > 1 else None
    held = [summary(m, default in (None, m.id)) for m in state.models.values()]
    waiting = [ModelSummary(id=model_id, version=version, state=UNLOADED, source=source,
                            target=target, reason="loads at its first request "
                            "(SERVICE_ON_DEMAND)", default=default == model_id)
               for model_id, (version, source, target) in state.registry.on_disk().items()
               if model_id not in state.models]
    return ModelList(models=sorted(held + waiting, key=lambda m: m.id))


@router.get(paths.MODELS + "/{model_id}", response_model=ModelInfo, responses=ERRORS,
            tags=["model"])
async def model_by_id(model_id: str, state: StateDep) -> ModelInfo:
    """One model: manifest summary, test metrics and model card."""
    return model_info(state.model_for(model_id))


def summary(m: Model, default: bool) -> ModelSummary:
    out = ModelSummary(id=m.id, version=m.version, state=m.state.value,
                       reason=m.reason or None, default=default)
    if m.translator is not None:
        manifest = m.translator.manifest
        out.source, out.target = manifest.source_lang, manifest.target_lang
        out.model_id, out.variant = manifest.model_id, m.translator.variant
        out.memory_mb, out.loaded_at = m.size_mb, m.loaded_at
    return out


def model_info(chosen: Model) -> ModelInfo:
    translator = chosen.translator
    assert translator is not None
    m = translator.manifest
    card = translator.bundle_dir / MODEL_CARD
    return ModelInfo(
        id=chosen.id, version=chosen.version,
        model_id=m.model_id, source_lang=m.source_lang, target_lang=m.target_lang,
        variant=translator.model.variant, provider=translator.model.provider,
        architecture=vars(m.architecture), max_source_tokens=m.max_source_tokens,
        metrics=m.metrics, parity=m.parity, training=m.training,
        shortlist=translator.shortlist is not None,
        shortlist_quality=m.shortlist.quality if m.shortlist else None,
        fused_encoder=translator.model.fused_encoder,
        model_card=card.read_text(encoding="utf-8") if card.is_file() else None)


# The admin API: its own keys (SERVICE_ADMIN_KEYS); off without them.

async def require_admin(request: Request, state: StateDep) -> None:
    keys = state.settings.admin_key_list()
    if not keys:
        raise Forbidden("the admin API is off: set SERVICE_ADMIN_KEYS to use it")
    check_key(presented_key(request.headers), keys)
    if state.settings.workers > 1:
        raise Forbidden("the admin API is off with SERVICE_WORKERS > 1: it would change the "
                        "models of the one worker that answers; change the repository and "
                        "restart the service instead")


AdminDep = Depends(require_admin)

@router.post(paths.MODELS + "/{model_id}/load", response_model=ModelSummary,
             response_model_exclude_none=True, responses=ERRORS, tags=["admin"],
             dependencies=[AdminDep])
async def load(model_id: str, state: StateDep) -> ModelSummary:
    """Load the model's served version (pinned, else the newest); answers when it is
    ready or has failed."""
    return admin_summary(state, await admin(state.registry.load_model, model_id))


@router.post(paths.MODELS + "/{model_id}/unload", response_model=ModelSummary,
             response_model_exclude_none=True, responses=ERRORS, tags=["admin"],
             dependencies=[AdminDep])
async def unload(model_id: str, state: StateDep) -> ModelSummary:
    """Stop taking requests for the model (they get 503 while it drains, 422 after), let
    its admitted ones finish, and free it; answers when it is gone."""
    return admin_summary(state, await admin(state.registry.unload_model, model_id))


@router.post(paths.MODELS + "/{model_id}/reload", response_model=ModelSummary,
             response_model_exclude_none=True, responses=ERRORS, tags=["admin"],
             dependencies=[AdminDep])
async def reload(model_id: str, state: StateDep) -> ModelSummary:
    """Verify and warm the newest (or pinned) version beside the serving one, switch new
    requests to it, let the old one finish its admitted sentences, free it. A version that
    fails leaves the old one serving, and ``reason`` says why."""
    return admin_summary(state, await admin(state.registry.reload_model, model_id))


async def admin(change: Callable[[str], Awaitable[Model]], model_id: str) -> Model:
    try:
        return await change(model_id)
    except RepositoryError as exc:
        raise InvalidOption(str(exc)) from exc


def admin_summary(state: ServiceState, m: Model) -> ModelSummary:
    default = len(state.models) <= 1 or state.settings.default_model == m.id
    return summary(m, default)
