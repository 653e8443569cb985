"""Fuzz the OpenAPI spec with schemathesis: no 5xx, every 4xx a JSON error body, and the API
exactly as strict as its schema (documented status codes, content types and bodies; every
request the schema calls invalid is rejected).

FUZZ_CASES is the number of generated /translate requests, half valid and half invalid by
the schema (1000 in the full run; `make test-quick` uses 100). Hypothesis drives the
schemathesis strategies directly: the schema is fetched from the live server at test time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import Server, start_server

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "1000"))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Small limits keep generated requests cheap; the limits themselves get fuzzed too.
    server = start_server(tmp_path_factory.mktemp("fuzz"), SERVICE_MAX_TEXT_CHARS="300",
                          SERVICE_MAX_BEAM_SIZE="3", SERVICE_DEFAULT_BEAM_SIZE="2",
                          SERVICE_MAX_TEXTS="4",
                          SERVICE_LOG_LEVEL="warning")
    server.wait("/health/ready", 200)
    yield server
    server.stop()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


def check(case: schemathesis.Case) -> None:
    response = case.call(timeout=60)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500, (case.body, response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        if case.path.startswith("/libretranslate/"):  # their shape: {"error": "<message>"}
            assert isinstance(error, str) and error, response.text
        else:
            assert error["message"] and error["request_id"], response.text
        assert "Traceback" not in response.text


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_generated_requests_never_get_5xx(fuzz_server: Server,
                                          mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        is_translate = (operation.method.upper(), operation.path) == ("POST", "/translate")
        examples = FUZZ_CASES // 2 if is_translate else 10

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            key = f"{case.method.upper()} {case.path}"
            calls[key] = calls.get(key, 0) + 1
            check(case)

        try:
            run()
        except Unsatisfiable:  # an operation without inputs has no invalid requests
            assert mode == schemathesis.GenerationMode.NEGATIVE and not is_translate
    assert calls.get("POST /translate", 0) >= FUZZ_CASES // 2, calls
