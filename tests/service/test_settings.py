"""Contradictory settings stop the service at start-up, naming the settings involved."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings, largest_legal_body
from tests.conftest import ROOT


def test_defaults_are_consistent() -> None:
    s = Settings()
    assert s.default_beam_size <= s.max_beam_size
    assert s.max_body_bytes >= largest_legal_body(s.max_texts, s.max_text_chars)


@pytest.mark.parametrize(("env", "names"), [
    ({"SERVICE_DEFAULT_BEAM_SIZE": "9", "SERVICE_MAX_BEAM_SIZE": "8"},
     ["SERVICE_DEFAULT_BEAM_SIZE", "SERVICE_MAX_BEAM_SIZE"]),
    ({"SERVICE_MAX_BODY_BYTES": "4096"},
     ["SERVICE_MAX_BODY_BYTES", "SERVICE_MAX_TEXTS", "SERVICE_MAX_TEXT_CHARS"]),
    ({"SERVICE_QUEUE_TIMEOUT_S": "-1"}, ["SERVICE_QUEUE_TIMEOUT_S"]),
    ({"SERVICE_BODY_TIMEOUT_S": "0"}, ["SERVICE_BODY_TIMEOUT_S"]),
    ({"SERVICE_KEEPALIVE_TIMEOUT_S": "2.5"}, ["SERVICE_KEEPALIVE_TIMEOUT_S"]),  # whole seconds
    ({"SERVICE_VARIANT": "int4"}, ["SERVICE_VARIANT"]),
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
