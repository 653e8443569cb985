"""Request and response models of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TranslateRequest(BaseModel):
    # strict: no coercion, so the API accepts exactly what its schema documents ("0" or 0 is
    # not a boolean, 4.0 is not a beam size).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"text": "Save the document as %s?", "beam_size": 4},
                     {"text": ["Open file", "Insert table"], "return_attention": True}]})

    text: str | list[str] = Field(description="a text, or a list of texts translated as a batch")
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", max_length=128,
                              description="the model's id (GET /models); default: the model "
                              "serving source -> target, else SERVICE_DEFAULT_MODEL")
    source: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$", max_length=16,
                               description="source language code, to choose the model by pair")
    target: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$", max_length=16,
                               description="target language code, to choose the model by pair")
    beam_size: int | None = Field(None, ge=1, le=64,
                                  description="1 = greedy; default SERVICE_DEFAULT_BEAM_SIZE "
                                  "(or n_best if larger); at most SERVICE_MAX_BEAM_SIZE")
    n_best: int = Field(1, ge=1, le=64, description="alternatives per text, at most beam_size")
    max_length: int | None = Field(None, ge=1, le=512,
                                   description="cap on generated subword tokens per text")
    return_attention: bool = Field(False, description="include tokens and attention matrix")
    return_alignment: bool = Field(False, description="include a word alignment")
    glossary: dict[str, str] | None = Field(
        None, description="source term -> target term (at most 256, terms of at most 100 "
        "characters): each term found in a text (whole words, any case, longest first, not "
        "inside placeholders) comes out as its target term, as often as the text has it")
    glossary_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", max_length=128,
                                    description="a named glossary of the model's language "
                                    "pair (GET /glossaries) instead of its default one; "
                                    "glossary entries are added to it")

    @property
    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else self.text


class Alternative(BaseModel):
    text: str
    score: float = Field(description="length-normalized log-probability")


class AlignmentLink(BaseModel):
    source: int = Field(description="source word index")
    target: int = Field(description="target word index")
    source_word: str
    target_word: str
    weight: float = Field(description="attention mass of the target word on the source word")


class AppliedTermOut(BaseModel):
    source: str = Field(description="the glossary's source term")
    target: str = Field(description="as written in the translation")
    source_start: int = Field(description="character span of the term in the text")
    source_end: int
    target_start: int = Field(description="character span of the term in the translation")
    target_end: int


class TranslationOut(BaseModel):
    text: str
    score: float = Field(description="log-probability (length-normalized for beam search)")
    alternatives: list[Alternative] | None = Field(None, description="n-best list, best first")
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None
    attention: list[list[float]] | None = Field(
        None, description="target tokens × source tokens; each row sums to 1")
    alignment: list[AlignmentLink] | None = None
    terms: list[AppliedTermOut] | None = Field(None, description="the glossary terms applied "
                                               "(with a glossary)")


class Timing(BaseModel):
    total_ms: float
    queue_ms: float = Field(description="waiting until its first sentence joined the running "
                            "batch")
    decode_ms: float = Field(description="from then until its last sentence finished")
    encode_ms: float = Field(description="the encoder runs that included its sentences")
    batch_size: int = Field(description="sentences running (its own included) when it joined")


class TranslateResponse(BaseModel):
    model: str = Field(description="the id of the model that translated")
    model_version: str
    translations: list[TranslationOut]
    timing: Timing


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: list[dict[str, object]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    detail: str | None = None
    models: dict[str, str] | None = Field(None, description="each model's state")


class GlossaryInfo(BaseModel):
    id: str
    source: str
    target: str
    entries: int
    default: bool = Field(description="applied to every request of its pair that names no "
                          "other")


class GlossaryList(BaseModel):
    glossaries: list[GlossaryInfo]


class ModelSummary(BaseModel):
    id: str
    version: str
    state: str = Field(description="loading | ready | unloading | failed, or unloaded: "
                       "an on-demand model that loads at its first request")
    reason: str | None = Field(None, description="why it failed, or why its last reload did")
    source: str | None = None
    target: str | None = None
    model_id: str | None = Field(None, description="the id in its manifest")
    variant: str | None = None
    memory_mb: float | None = Field(None, description="its ONNX files and tables, as loaded")
    loaded_at: float | None = Field(None, description="Unix time")
    default: bool = Field(False, description="requests naming no model or pair go to it")


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelInfo(BaseModel):
    id: str
    version: str
    model_id: str
    source_lang: str
    target_lang: str
    variant: str
    provider: str
    architecture: dict[str, object]
    max_source_tokens: int
    metrics: dict[str, object]
    parity: dict[str, object]
    training: dict[str, object]
    shortlist: bool = Field(False, description="steps score only each sentence's vocabulary "
                            "shortlist (SERVICE_SHORTLIST)")
    shortlist_quality: dict[str, object] | None = Field(
        None, description="BLEU/chrF with the whole vocabulary and with the shortlist, per "
        "test set, as measured when the shortlist was built")
    fused_encoder: bool = Field(False, description="the encoder runs as one bidirectional GRU "
                                "derived at load, with the bundle's numbers (false: the "
                                "bundle's own graph; the log says why)")
    model_card: str | None = None
