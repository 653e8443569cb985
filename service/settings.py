"""Service configuration: one pydantic-settings class, read from ``SERVICE_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "en-de"


class Settings(BaseSettings):
    """Every field is the environment variable ``SERVICE_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_", extra="ignore")

    # Model
    bundle_dir: Path = Field(DEFAULT_BUNDLE, description="model bundle directory")
    variant: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="which ONNX files to load; auto = fp32 if shipped, else int8")
    provider: Literal["cpu", "cuda", "auto"] = Field("cpu", description="execution provider")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per op; 0 = cores")
    allow_spinning: bool = Field(False, description="onnxruntime busy-wait between ops")

    # Server
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    log_level: str = Field("info", description="debug | info | warning | error")

    # Batching
    max_batch_size: int = Field(32, ge=1, le=1024, description="sentences per decode batch")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill up")

    # Decoding defaults
    default_beam_size: int = Field(4, ge=1, description="beam size when a request names none")
    length_penalty: float | None = Field(
        None, ge=0, description="GNMT length penalty alpha; unset: the bundle's tuned value")
    max_length_ratio: float = Field(2.0, gt=0, description="target steps <= ratio*source+10")

    # Request limits
    max_text_chars: int = Field(2000, ge=1, description="characters per text")
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_input_tokens: int = Field(256, ge=2, description="subword tokens per text")
    max_beam_size: int = Field(8, ge=1, description="largest beam a request may ask for")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size, checked "
                                "before parsing")

    # Overload and shutdown
    max_queue_sentences: int = Field(1024, ge=1, description="queued sentences before new "
                                     "requests get 503 + Retry-After")
    queue_timeout_s: float = Field(30.0, gt=0, description="a request still queued after this "
                                   "long gets 503 and is dropped")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, how long in-flight "
                                      "requests may take to finish")

    # Access control
    api_keys: str = Field("", description="comma-separated keys for /translate; empty = open")
    protect_metrics: bool = Field(False, description="require an API key for /metrics too")
    cors_origins: str = Field("", description="comma-separated allowed origins; empty = no CORS")

    def key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
