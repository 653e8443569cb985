"""Service configuration: one pydantic-settings class, read from ``SERVICE_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service import paths

MODELS = Path(__file__).resolve().parent.parent / "models"  # the shipped repository
DEFAULT_BUNDLE = MODELS / "en-de"


def largest_legal_body(max_texts: int, max_text_chars: int) -> int:
    """Bytes of the largest request within the text limits: UTF-8 (4 bytes a character at
    most), quotes and commas, and room for every option."""
    return max_texts * (4 * max_text_chars + 3) + 512


class Settings(BaseSettings):
    """Every field is the environment variable ``SERVICE_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_", extra="ignore")

    # Model
    model_repository: Path = Field(MODELS, description="directory of model bundles "
                                   "(<dir>/<model>/ or <dir>/<model>/<version>/): every model "
                                   "in it is served")
    bundle_dir: Path | None = Field(None, description="serve only this bundle (a repository "
                                    "of one, the model named after its directory)")
    default_model: str = Field("en-de", description="the model of requests that name no "
                               "model or language pair (a repository of one: that model)")
    pinned_versions: str = Field("", description="comma-separated model=version pins, e.g. "
                                 "'en-fr=1'; other models serve their highest version")
    glossary_dir: Path | None = Field(None, description="named glossaries: "
                                      "<dir>/<source>-<target>/<name>.tbx|csv|tsv|po; a "
                                      "glossary named default applies to every request of "
                                      "its pair")
    glossary_method: Literal["mask", "constrain"] = Field(
        "mask", description="how the search honours glossary terms: mask = each term masked "
        "like a placeholder, its target term put in its place; constrain = lexically "
        "constrained beam search (the term's own pieces, placed by the model: higher chrF, "
        "but a term the model words differently can come twice; beam search only, greedy "
        "decoding masks)")
    glossary_model_first: bool = Field(
        True, description="decode a text with glossary terms as it is first and answer the "
        "best of its beam's candidates that has every term; only where none has them is it "
        "decoded again with the terms enforced (SERVICE_GLOSSARY_METHOD)")
    glossary_fallback_beam: int = Field(
        2, ge=0, description="model first, masked terms: the beam of that second decode (at "
        "most the request's, at least its n_best; constrained search keeps the request's "
        "beam, which it shares out between its banks); 0 = the request's beam")
    on_demand: str = Field("", description="comma-separated model ids (or *) loaded at their "
                           "first request instead of at start")
    max_loaded_models: int = Field(0, ge=0, description="beyond this many loaded models, the "
                                   "least recently used on-demand one is unloaded; 0 = no "
                                   "limit")
    variant: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="which ONNX files to load; auto = fp32 if shipped, else int8")
    provider: Literal["cpu", "cuda", "auto"] = Field("cpu", description="execution provider")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per op; 0 = cores")
    allow_spinning: bool = Field(False, description="onnxruntime busy-wait between ops")
    shortlist: bool | None = Field(
        None, description="score only each sentence's vocabulary shortlist; unset = the "
        "bundle's default, false = the whole vocabulary (exact)")

    # Server
    workers: int = Field(1, ge=1, le=64, description="server processes sharing the port "
                         "(SO_REUSEPORT), each with its own models, decode thread and "
                         "onnxruntime threads (unset SERVICE_INTRA_OP_THREADS: cores / "
                         "workers); /metrics sums them; the admin API is off beyond 1")
    worker_timeout_s: float = Field(30.0, ge=2, description="with SERVICE_WORKERS > 1, a "
                                    "worker whose event loop has not run for this long is "
                                    "killed and started again")
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    log_level: str = Field("info", description="debug | info | warning | error")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection that has not sent "
                                    "a complete request head this long after connecting (or "
                                    "after its previous response) is closed")
    keepalive_timeout_s: int = Field(5, ge=1, description="idle keep-alive connections are "
                                     "closed after this many seconds (uvicorn's whole seconds)")
    max_header_bytes: int = Field(16384, ge=1024, description="request line + headers; "
                                  "larger heads get 400 and the connection is closed")
    max_connections: int = Field(512, ge=1, description="open connections beyond which "
                                 "requests get 503 (health checks excepted)")

    # Step-level batching: queued sentences join the running batch between decoder steps
    max_batch_size: int = Field(64, ge=1, le=1024, description="sentences decoding at once; "
                                "a request with none running may start one beyond it, up to "
                                "an eighth more, so one request cannot hold every place")
    max_batch_tokens: int = Field(131072, ge=1, description="running sentences' beam rows x "
                                  "source tokens, summed: the per-step budget (a request "
                                  "beyond it runs in parts; one sentence always fits)")
    max_request_tokens: int = Field(65536, ge=1, description="beam rows x source tokens of "
                                    "one request; costlier requests get 413")
    max_step_cost: int = Field(16384, ge=0, description="beam rows x source positions one "
                               "decoder step computes at most: beyond it the sentences with "
                               "the fewest steps go first and the rest take turns, so a short "
                               "request is not held up by long ones; 0 = every row, every step")

    # Decoding defaults
    default_beam_size: int = Field(4, ge=1, description="beam size when a request names none")
    length_penalty: float | None = Field(
        None, ge=0, description="GNMT length penalty alpha; unset: the bundle's tuned value")
    max_length_ratio: float | None = Field(
        None, gt=0, description="target steps <= int(ratio * source) + extra; default: the "
        "bundle's (2.0 and 10 for ours, 1.25 and 5 as onmt_translate for OpenNMT-py imports)")

    # Request limits
    max_text_chars: int = Field(2000, ge=1, description="characters per text")
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_input_tokens: int = Field(256, ge=2, description="subword tokens per text")
    max_beam_size: int = Field(8, ge=1, description="largest beam a request may ask for")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size, checked "
                                "before parsing (chunked bodies too)")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body not received "
                                  "within this long gets 408")

    # Overload and shutdown
    max_queue_sentences: int = Field(1024, ge=1, description="queued sentences before new "
                                     "requests get 503 + Retry-After")
    queue_timeout_s: float = Field(30.0, gt=0, description="a request still queued after this "
                                   "long gets 503 and is dropped")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, how long in-flight "
                                      "requests may take to finish")
    shutdown_delay_s: float = Field(0.0, ge=0, description="on SIGTERM, keep accepting requests "
                                    "this long (readiness already off) before draining: for "
                                    "platforms without a preStop hook")

    # Access control
    api_keys: str = Field("", description="comma-separated keys for /translate; empty = open")
    admin_keys: str = Field("", description="comma-separated keys for the admin API (POST "
                            "/models/{id}/load|unload|reload); empty = the admin API is off")
    protect_metrics: bool = Field(False, description="require an API key for /metrics too")
    cors_origins: str = Field("", description="comma-separated allowed origins; empty = no CORS")

    # Compatibility surfaces
    libretranslate_prefix: str = Field(
        "/libretranslate", description="path under which the LibreTranslate-compatible API "
        "is served (POST <prefix>/translate, GET <prefix>/languages, ...); empty = off")

    @field_validator("pinned_versions")
    @classmethod
    def valid_pins(cls, pins: str) -> str:
        for pin in filter(str.strip, pins.split(",")):
            if not re.fullmatch(r"\s*[A-Za-z0-9._-]+=[A-Za-z0-9._-]+\s*", pin):
                raise ValueError(f"{pin!r} is not a pin: write model=version, e.g. 'en-fr=1'")
        return pins

    @field_validator("libretranslate_prefix")
    @classmethod
    def valid_prefix(cls, prefix: str) -> str:
        if prefix and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
            raise ValueError(f"{prefix!r} is not a path prefix: write it like "
                             "'/libretranslate' (a leading slash, no trailing one), or leave "
                             "it empty to switch the LibreTranslate API off")
        if prefix and f"/{prefix.split('/')[1]}" in paths.OWN:
            raise ValueError(f"{prefix!r} overlaps the service's own paths "
                             f"({', '.join(paths.OWN)})")
        return prefix

    @model_validator(mode="after")
    def consistent(self) -> Settings:
        """Refuse combinations that would fail at request time instead of at start-up."""
        if self.default_beam_size > self.max_beam_size:
            raise ValueError(f"SERVICE_DEFAULT_BEAM_SIZE ({self.default_beam_size}) exceeds "
                             f"SERVICE_MAX_BEAM_SIZE ({self.max_beam_size}): every request "
                             "without a beam_size would be refused")
        if self.max_request_tokens < self.max_input_tokens * self.max_beam_size:
            raise ValueError(f"SERVICE_MAX_REQUEST_TOKENS ({self.max_request_tokens}) is "
                             "smaller than one text of SERVICE_MAX_INPUT_TOKENS "
                             f"({self.max_input_tokens}) at SERVICE_MAX_BEAM_SIZE "
                             f"({self.max_beam_size}): such a legal text would be refused")
        if self.workers > 1 and self.max_loaded_models:
            raise ValueError("SERVICE_MAX_LOADED_MODELS cannot be combined with "
                             "SERVICE_WORKERS > 1: each worker would unload models on its own "
                             "and their metrics would outlive them")
        largest = largest_legal_body(self.max_texts, self.max_text_chars)
        if self.max_body_bytes < largest:
            raise ValueError(f"SERVICE_MAX_BODY_BYTES ({self.max_body_bytes}) is smaller than "
                             f"the largest legal request ({largest} bytes: SERVICE_MAX_TEXTS "
                             f"{self.max_texts} x SERVICE_MAX_TEXT_CHARS {self.max_text_chars} "
                             "characters of up to 4 UTF-8 bytes)")
        return self

    def key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def admin_key_list(self) -> list[str]:
        return [k.strip() for k in self.admin_keys.split(",") if k.strip()]

    def on_demand_ids(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.on_demand.split(",") if m.strip())

    def pins(self) -> dict[str, str]:
        """``SERVICE_PINNED_VERSIONS`` as model id -> version."""
        pairs = [p.split("=", 1) for p in self.pinned_versions.split(",") if p.strip()]
        return {model.strip(): version.strip() for model, version in pairs}

    def origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
