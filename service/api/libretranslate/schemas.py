"""LibreTranslate's response shapes (their OpenAPI names in comments), and its request
fields as an OpenAPI body: the handlers read JSON and forms alike, so the body is described
here rather than by a pydantic model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DetectedLanguage(BaseModel):  # "detections" items
    confidence: float = Field(description="0-100; the bundle's source language is 100")
    language: str


class Translated(BaseModel):  # "translate"
    translatedText: str | list[str] = Field(
        description="a string for a string q, a list for a list q")
    alternatives: list[str] | list[list[str]] | None = Field(
        None, description="when alternatives > 0: other n-best candidates (per text for a list)")
    detectedLanguage: DetectedLanguage | list[DetectedLanguage] | None = Field(
        None, description="when source is auto (per text for a list)")


class Language(BaseModel):  # "languages" items
    code: str
    name: str
    targets: list[str]


class LanguageRef(BaseModel):
    code: str
    name: str


class FrontendLanguages(BaseModel):
    source: LanguageRef
    target: LanguageRef


class FrontendSettings(BaseModel):  # "frontend-settings"
    charLimit: int
    frontendTimeout: int
    apiKeys: bool
    keyRequired: bool
    suggestions: bool
    filesTranslation: bool
    supportedFilesFormat: list[str]
    language: FrontendLanguages


class LibreError(BaseModel):  # "error-response"
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": LibreError} for code in (400, 403, 408, 429, 500, 503)}

_TEXTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_API_KEY = {"type": ["string", "null"],
            "description": "needed when the server has SERVICE_API_KEYS"}


def body(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """An OpenAPI request body taking ``fields`` as JSON, urlencoded or multipart form."""
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "content": {
        media: {"schema": schema} for media in (
            "application/json", "application/x-www-form-urlencoded", "multipart/form-data")}}}


TRANSLATE_BODY = body({
    "q": {**_TEXTS, "description": "a text, or a list of texts (then every answer is a list)",
          "example": "Save the document as %s?"},
    "source": {"type": "string", "description": "a language code, or auto", "example": "en"},
    "target": {"type": "string", "example": "de"},
    "format": {"enum": ["text", "html", "", None], "default": "text", "description":
               "html: tags and character references are kept verbatim; empty = text"},
    "alternatives": {"type": "integer", "default": 0, "description": "other candidates to "
                     "return per text (from the n-best list); at most SERVICE_MAX_BEAM_SIZE - 1"},
    "api_key": _API_KEY,
}, ["q", "source", "target"])

DETECT_BODY = body({"q": _TEXTS, "api_key": _API_KEY}, ["q"])
