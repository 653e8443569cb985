"""Contradictory settings stop the service at start-up, naming the settings involved."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.api.translation import resolve_options
from service.app import create_app
from service.errors import InvalidOption
from service.settings import Settings, largest_legal_body
from service.translator import DecodeOptions
from tests.conftest import ROOT


def test_defaults_are_consistent() -> None:
    s = Settings()
    assert s.default_beam_size <= s.max_beam_size
    assert s.max_body_bytes >= largest_legal_body(s.max_texts, s.max_text_chars)
    # offline evaluation decodes as the service does by default
    assert resolve_options(s) == DecodeOptions(beam_size=s.default_beam_size)


@pytest.mark.parametrize(("env", "names"), [
    ({"SERVICE_DEFAULT_BEAM_SIZE": "9", "SERVICE_MAX_BEAM_SIZE": "8"},
     ["SERVICE_DEFAULT_BEAM_SIZE", "SERVICE_MAX_BEAM_SIZE"]),
    ({"SERVICE_MAX_BODY_BYTES": "4096"},
     ["SERVICE_MAX_BODY_BYTES", "SERVICE_MAX_TEXTS", "SERVICE_MAX_TEXT_CHARS"]),
    ({"SERVICE_QUEUE_TIMEOUT_S": "-1"}, ["SERVICE_QUEUE_TIMEOUT_S"]),
    ({"SERVICE_BODY_TIMEOUT_S": "0"}, ["SERVICE_BODY_TIMEOUT_S"]),
    ({"SERVICE_KEEPALIVE_TIMEOUT_S": "2.5"}, ["SERVICE_KEEPALIVE_TIMEOUT_S"]),  # whole seconds
    ({"SERVICE_VARIANT": "int4"}, ["SERVICE_VARIANT"]),
    ({"SERVICE_WORKERS": "2", "SERVICE_MAX_LOADED_MODELS": "1"},
     ["SERVICE_WORKERS", "SERVICE_MAX_LOADED_MODELS"]),
    ({"SERVICE_WORKERS": "0"}, ["SERVICE_WORKERS"]),
    ({"SERVICE_WORKER_TIMEOUT_S": "1"}, ["SERVICE_WORKER_TIMEOUT_S"]),
    ({"SERVICE_LIBRETRANSLATE_PREFIX": "libretranslate/"}, ["SERVICE_LIBRETRANSLATE_PREFIX"]),
    ({"SERVICE_LIBRETRANSLATE_PREFIX": "/docs/lt"}, ["SERVICE_LIBRETRANSLATE_PREFIX"]),
])
def test_contradictions_stop_the_process_with_one_clear_message(
        env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ValidationError):
        Settings(**{k.removeprefix("SERVICE_").lower(): v for k, v in env.items()})
    run = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env})
    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("invalid configuration: ")
    for name in names:
        assert name in line, line


def test_libretranslate_surface_can_be_switched_off() -> None:
    paths = set(create_app(Settings(libretranslate_prefix="")).openapi()["paths"])
    assert "/translate" in paths and not any(p.startswith("/libretranslate") for p in paths)
    paths = set(create_app(Settings()).openapi()["paths"])
    assert {"/libretranslate/translate", "/libretranslate/languages"} <= paths


def test_decoding_options_are_resolved_from_the_settings_in_one_place() -> None:
    s = Settings(default_beam_size=2, max_beam_size=6, length_penalty=0.8)
    plain = resolve_options(s)
    assert (plain.beam_size, plain.n_best, plain.length_penalty, plain.attention) == (
        2, 1, 0.8, False)
    assert resolve_options(s, n_best=5).beam_size == 5  # widened to the alternatives asked
    assert resolve_options(s, beam_size=1, attention=True).attention
    assert resolve_options(Settings(glossary_fallback_beam=0)).fallback_beam is None
    with pytest.raises(InvalidOption, match=r"beam_size 7 exceeds the limit 6 \(SERVICE_MAX"):
        resolve_options(s, beam_size=7)
    with pytest.raises(InvalidOption, match="n_best 3 must not exceed beam_size 2"):
        resolve_options(s, beam_size=2, n_best=3)
    with pytest.raises(InvalidOption, match="beam_size 7 exceeds"):
        resolve_options(s, n_best=7)
