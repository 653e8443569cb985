"""Reading a LibreTranslate request: its fields (JSON, or query string and form), the API
key and the translate options, with LibreTranslate's rules and messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from service.api.middleware import presented_key
from service.auth import check_key
from service.errors import Forbidden, InvalidOption, Unauthorized
from service.glossary import NAME_RE

# English names of common codes, for /languages; other codes are named by their code.
NAMES = {"ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
         "en": "English", "es": "Spanish", "fi": "Finnish", "fr": "French", "hu": "Hungarian",
         "it": "Italian", "ja": "Japanese", "ko": "Korean", "nb": "Norwegian Bokmål",
         "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
         "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese"}


def language_name(code: str) -> str:
    return NAMES.get(code, code)


@dataclass(frozen=True)
class Fields:
    values: dict[str, Any]
    form: bool  # from the query string and a form, not JSON


@dataclass(frozen=True)
class TranslateCall:
    texts: list[str]
    batch: bool  # q was a list: every answer is a list
    auto: bool  # source was auto: answer detectedLanguage
    html: bool
    alternatives: int
    source: str  # the language code (auto resolved)
    target: str
    glossary: dict[str, str] | None = None  # extensions: the native API's glossary fields
    glossary_id: str | None = None


async def read_fields(request: Request) -> Fields:
    """A JSON object, or (as LibreTranslate's ``request.values``) the query string and form
    fields together; a field given several times is a list."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and
                                        media.endswith("+json")):
        try:
            data = json.loads(await request.body())
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidOption(f"Invalid JSON format: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidOption("Invalid JSON format: send a JSON object")
        return Fields(data, form=False)
    try:
        form = await request.form()
    except (MultiPartException, HTTPException, ValueError) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or exc
        raise InvalidOption(f"Invalid form body: {detail}") from exc
    values: dict[str, Any] = {}
    for source in (request.query_params, form):
        for key in source:
            found = source.getlist(key)
            values[key] = found[0] if len(found) == 1 else found
    return Fields(values, form=True)


def check_api_key(fields: Fields, request: Request, keys: list[str]) -> None:
    """With SERVICE_API_KEYS set, the key comes in the api_key field (or a header)."""
    given = fields.values.get("api_key")
    if not isinstance(given, str | None):
        raise InvalidOption("Invalid request: api_key must be a string")
    if not keys:
        return
    presented = given or presented_key(request.headers)
    try:
        check_key(presented, keys)
    except Unauthorized as exc:
        raise Unauthorized("Invalid request: missing api_key parameter (this server requires "
                           "an API key)") from exc
    except Forbidden as exc:
        raise Forbidden("Invalid API key") from exc


def texts_field(fields: Fields) -> tuple[list[str], bool]:
    """``q`` as a list of texts, and whether it was a list; forms' CRLF become LF."""
    q = fields.values.get("q")
    if not q:
        raise InvalidOption("Invalid request: missing q parameter")
    if isinstance(q, str):
        texts, batch = [q], False
    elif isinstance(q, list) and all(isinstance(t, str) for t in q):
        texts, batch = q, True
    else:
        raise InvalidOption("Invalid request: q must be a string or a list of strings")
    if fields.form:
        texts = [t.replace("\r\n", "\n") for t in texts]
    return texts, batch


def text_field(fields: Fields, name: str) -> str:
    value = fields.values.get(name)
    if not value:
        raise InvalidOption(f"Invalid request: missing {name} parameter")
    if not isinstance(value, str):
        raise InvalidOption(f"Invalid request: {name} must be a string")
    return value.strip().lower()


def translate_call(fields: Fields, pairs: Sequence[tuple[str, str]], max_alternatives: int
                   ) -> TranslateCall:
    """Validate a translate request against the served language pairs and the limits;
    ``auto`` stands for the source language while only one serves the target."""
    texts, batch = texts_field(fields)
    source, target = text_field(fields, "source"), text_field(fields, "target")
    offered = "this server translates " + "; ".join(
        f"{language_name(s)} ({s}) to {language_name(t)} ({t})" for s, t in pairs) + " only"
    sources = sorted({s for s, t in pairs if t == target})
    if source != "auto" and source not in {s for s, _ in pairs}:
        raise InvalidOption(f"{source} is not supported as a source language: {offered}")
    if not sources or (source != "auto" and source not in sources):
        raise InvalidOption(f"{target} is not supported as a target language: {offered}")
    if source == "auto" and len(sources) > 1:
        raise InvalidOption(f"source auto is ambiguous: {', '.join(sources)} all translate to "
                            f"{target}; name the source language")
    text_format = fields.values.get("format")
    if text_format in (None, ""):  # as LibreTranslate: absent or empty is text
        text_format = "text"
    if text_format not in ("text", "html"):
        raise InvalidOption(f"{text_format} format is not supported: use text or html")
    return TranslateCall(texts, batch, source == "auto", text_format == "html",
                         alternatives(fields, max_alternatives),
                         sources[0] if source == "auto" else source, target,
                         glossary_field(fields), glossary_id_field(fields))


def glossary_id_field(fields: Fields) -> str | None:
    """The ``glossary_id`` extension: a named glossary (GET /glossaries)."""
    raw = fields.values.get("glossary_id")
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or not NAME_RE.fullmatch(raw):
        raise InvalidOption("Invalid request: glossary_id must be a glossary name "
                            "(letters, digits, '.', '_', '-')")
    return raw


def glossary_field(fields: Fields) -> dict[str, str] | None:
    """The ``glossary`` extension: a JSON object of source -> target terms (in a form, its
    JSON text)."""
    raw = fields.values.get("glossary")
    if raw in (None, ""):
        return None
    if fields.form and isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise InvalidOption("Invalid request: glossary must be an object of source term: "
                            "target term strings")
    return raw


def alternatives(fields: Fields, limit: int) -> int:
    """How many alternatives: a whole number (a numeric string in a form), negative = 0."""
    raw = fields.values.get("alternatives", 0)
    if fields.form and isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidOption("Invalid request: alternatives parameter is not a number")
    if raw > limit:
        raise InvalidOption(f"Invalid request: alternatives parameter must be <= {limit} "
                            "(SERVICE_MAX_BEAM_SIZE - 1)")
    return max(0, raw)
