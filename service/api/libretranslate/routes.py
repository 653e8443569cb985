"""LibreTranslate's endpoints: read the fields, translate through the service's own path
(:mod:`service.api.translation`), answer in their shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.libretranslate.request import (
    TranslateCall,
    check_api_key,
    language_name,
    read_fields,
    texts_field,
    translate_call,
)
from service.api.libretranslate.schemas import (
    DETECT_BODY,
    ERRORS,
    TRANSLATE_BODY,
    DetectedLanguage,
    FrontendLanguages,
    FrontendSettings,
    Language,
    LanguageRef,
    Translated,
)
from service.api.translation import StateDep, check_limits, resolve_options, translate_texts
from service.errors import LimitExceeded
from service.markup import Protected, TooManySpans, protect, restore
from service.translator import Translation

router = APIRouter(tags=["libretranslate"], responses=ERRORS)


@router.post("/translate", response_model=Translated, response_model_exclude_none=True,
             openapi_extra=TRANSLATE_BODY)
async def translate(request: Request, state: StateDep) -> Translated:
    """Translate q (a text or a list of texts), as LibreTranslate's POST /translate."""
    settings, pairs = state.settings, state.pairs()
    fields = await read_fields(request)
    check_api_key(fields, request, settings.key_list())
    call = translate_call(fields, pairs, settings.max_beam_size - 1)
    check_limits(call.texts, settings)
    protected = [protected_text(i, text, call.html) for i, text in enumerate(call.texts)]
    # a beam wide enough for the best translation and call.alternatives others
    options = resolve_options(settings, n_best=call.alternatives + 1)
    model = await state.acquire(source=call.source, target=call.target)
    glossary = state.glossary_for(model, call.glossary_id, call.glossary)
    result = await translate_texts(request, model, settings, [p.text for p in protected],
                                   options, glossary)
    return answer(call, result.translations, protected, call.source)


def protected_text(index: int, text: str, html: bool) -> Protected:
    try:
        return protect(text, html)
    except TooManySpans as exc:
        raise LimitExceeded(f"text {index}: {exc}") from exc


def answer(call: TranslateCall, translations: list[Translation], protected: list[Protected],
           source_lang: str) -> Translated:
    texts, others = [], []
    for translation, kept in zip(translations, protected, strict=True):
        best = restore(translation.best.text, kept)
        texts.append(best)
        candidates = [restore(c.text, kept) for c in translation.candidates[1:]]
        # As LibreTranslate: distinct alternatives, none equal to the translation.
        others.append([c for i, c in enumerate(candidates)
                       if c != best and c not in candidates[:i]][:call.alternatives])
    detected = DetectedLanguage(confidence=100.0, language=source_lang)
    if call.batch:
        return Translated(translatedText=texts,
                          alternatives=others if call.alternatives else None,
                          detectedLanguage=[detected] * len(texts) if call.auto else None)
    return Translated(translatedText=texts[0],
                      alternatives=others[0] if call.alternatives else None,
                      detectedLanguage=detected if call.auto else None)


@router.post("/detect", response_model=list[DetectedLanguage], openapi_extra=DETECT_BODY)
async def detect(request: Request, state: StateDep) -> list[DetectedLanguage]:
    """The language of q: the served source language (the models' sources share the
    confidence when there are several: there is no language identifier)."""
    sources = sorted({s for s, _ in state.pairs()})
    fields = await read_fields(request)
    check_api_key(fields, request, state.settings.key_list())
    texts_field(fields)
    return [DetectedLanguage(confidence=round(100.0 / len(sources), 2), language=s)
            for s in sources]


@router.get("/languages", response_model=list[Language])
async def languages(state: StateDep) -> list[Language]:
    """Every language of the served pairs, each listing the targets it translates to."""
    pairs = state.pairs()
    sources = sorted({s for s, _ in pairs})
    codes = sources + sorted({t for _, t in pairs} - set(sources))  # sources first
    return [Language(code=c, name=language_name(c),
                     targets=sorted(t for s, t in pairs if s == c)) for c in codes]


@router.get("/frontend/settings", response_model=FrontendSettings)
async def frontend_settings(state: StateDep) -> FrontendSettings:
    """What LibreTranslate's web page and some clients read before translating."""
    settings, default = state.settings, state.model_for()
    assert default.pair is not None
    src, tgt = default.pair
    keys = bool(settings.key_list())
    return FrontendSettings(
        charLimit=settings.max_text_chars, frontendTimeout=500, apiKeys=keys,
        keyRequired=keys, suggestions=False, filesTranslation=False, supportedFilesFormat=[],
        language=FrontendLanguages(source=LanguageRef(code=src, name=language_name(src)),
                                   target=LanguageRef(code=tgt, name=language_name(tgt))))
