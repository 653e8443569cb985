"""The LibreTranslate-compatible API of a real server, driven by clients nobody here wrote
(libretranslatepy, deep-translator) and by the exact requests Weblate and SearXNG send.

Every translation is checked against what the service's own POST /translate answers for
the same text and search (the text depends on the model shipped, not on this surface);
tests/integration/test_recorded_over_http.py checks it against the bundle's recorded
translations too.
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deep_translator import LibreTranslator
from deep_translator.exceptions import AuthorizationException
from libretranslatepy import LibreTranslateAPI

from tests.integration.conftest import Server, start_server

TEXTS = ["Save the document as a new file.", "Could not open %s: permission denied.",
         "Insert a table with $(ARG1) rows."]
KEYS = "key-one,key-two"
OFFERED = "this server translates English (en) to German (de) only"


def own(server: Server, texts: list[str], beam: int = 4, n_best: int = 1
        ) -> list[dict[str, Any]]:
    """The service's own translations (its default beam is 4, as this surface's)."""
    response = httpx.post(server.url + "/translate", timeout=60, json={
        "text": texts, "beam_size": beam, "n_best": n_best}, headers={"X-API-Key": "key-one"})
    response.raise_for_status()
    translations: list[dict[str, Any]] = response.json()["translations"]
    return translations


def lt(server: Server, path: str, prefix: str = "/libretranslate", **kwargs: Any
       ) -> httpx.Response:
    return httpx.post(f"{server.url}{prefix}{path}", timeout=60, **kwargs)


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API keys, another prefix and a queue of one sentence (two texts at once are too many)."""
    server = start_server(tmp_path_factory.mktemp("lt"), SERVICE_API_KEYS=KEYS,
                          SERVICE_LIBRETRANSLATE_PREFIX="/lt/v1",
                          SERVICE_MAX_QUEUE_SENTENCES="1")
    try:
        server.wait("/health/ready", 200)
        yield server
    finally:
        server.stop()


def test_libretranslatepy(server: Server) -> None:
    client = LibreTranslateAPI(server.url + "/libretranslate")
    assert client.translate(TEXTS[0], "en", "de") == own(server, TEXTS[:1])[0]["text"]
    assert client.languages() == [{"code": "en", "name": "English", "targets": ["de"]},
                                  {"code": "de", "name": "German", "targets": []}]
    assert client.detect("Hello") == [{"confidence": 100.0, "language": "en"}]
    with pytest.raises(urllib.error.HTTPError) as refused:
        client.translate(TEXTS[0], "en", "fr")
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {
        "error": f"fr is not supported as a target language: {OFFERED}"}


def test_deep_translator(server: Server) -> None:
    # It always sends a key (the server has none, so any is accepted) and puts the fields in
    # the query string of an empty POST.
    translator = LibreTranslator(source="en", target="de", api_key="unused",
                                 custom_url=server.url + "/libretranslate/")
    expected = [t["text"] for t in own(server, TEXTS)]
    assert translator.translate(TEXTS[1]) == expected[1]
    assert translator.translate_batch(TEXTS) == expected
    auto = LibreTranslator(source="auto", target="de", api_key="unused",
                           custom_url=server.url + "/libretranslate/")
    assert auto.translate(TEXTS[0]) == expected[0]


def test_deep_translator_with_keys(configured: Server) -> None:
    url = configured.url + "/lt/v1/"
    good = LibreTranslator(source="en", target="de", api_key="key-two", custom_url=url)
    assert good.translate(TEXTS[0]) == own(configured, TEXTS[:1])[0]["text"]
    bad = LibreTranslator(source="en", target="de", api_key="nope", custom_url=url)
    with pytest.raises(AuthorizationException):
        bad.translate(TEXTS[0])


def test_weblate_requests(server: Server) -> None:
    """What weblate/machinery/libretranslate.py sends: the languages, then a JSON batch with
    its placeholders replaced by [X<offset>X] markers (older releases: a form, one text)."""
    headers = {"Referer": "http://weblate.example/", "Accept": "application/json; charset=utf-8"}
    base = server.url + "/libretranslate"
    languages = httpx.get(base + "/languages", headers=headers).json()
    assert {x["code"] for x in languages} == {"en", "de"}
    # Weblate's "validate settings": one text, en -> de, an empty key
    check = lt(server, "/translate", headers=headers,
               json={"api_key": "", "q": ["test"], "source": "en", "target": "de"})
    assert check.status_code == 200 and check.json() == {
        "translatedText": [own(server, ["test"])[0]["text"]]}
    texts = ["Could not open [X15X]: [X18X]", "Delete [X7X] files from [X24X]?"]
    answer = lt(server, "/translate", headers=headers,
                json={"api_key": "", "q": texts, "source": "en", "target": "de"}).json()
    assert len(answer["translatedText"]) == 2
    for text, translated in zip(texts, answer["translatedText"], strict=True):
        for marker in ("[X15X]", "[X18X]", "[X7X]", "[X24X]"):
            assert translated.count(marker) == text.count(marker), (text, translated)
    old = lt(server, "/translate", headers=headers,
             data={"q": TEXTS[0], "source": "en", "target": "de"})
    assert old.json() == {"translatedText": own(server, TEXTS[:1])[0]["text"]}


def test_weblate_key_checks(configured: Server) -> None:
    body = {"q": ["test"], "source": "en", "target": "de"}
    ok = lt(configured, "/translate", prefix="/lt/v1", json={**body, "api_key": "key-one"})
    assert ok.status_code == 200 and len(ok.json()["translatedText"]) == 1
    missing = lt(configured, "/translate", prefix="/lt/v1", json={**body, "api_key": ""})
    assert missing.status_code == 400
    assert missing.json() == {"error": "Invalid request: missing api_key parameter (this "
                                       "server requires an API key)"}
    wrong = lt(configured, "/translate", prefix="/lt/v1", json={**body, "api_key": "nope"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "Invalid API key"})
    # a header does as well as the field; /languages needs no key, as in LibreTranslate
    header = lt(configured, "/translate", prefix="/lt/v1", json=body,
                headers={"Authorization": "Bearer key-two"})
    assert header.status_code == 200
    assert httpx.get(configured.url + "/lt/v1/languages").status_code == 200
    detect = lt(configured, "/detect", prefix="/lt/v1", data={"q": "Hello"})
    assert detect.status_code == 400 and "api_key" in detect.json()["error"]


def test_searxng_request_with_alternatives(server: Server) -> None:
    """SearXNG's engine: JSON, alternatives 3; the alternatives are the n-best list's other
    distinct candidates (beam 4, n_best 4 on the service's own API)."""
    answer = lt(server, "/translate", json={"q": TEXTS[0], "source": "en", "target": "de",
                                            "alternatives": 3}).json()
    [expected] = own(server, TEXTS[:1], beam=4, n_best=4)
    others = [a["text"] for a in expected["alternatives"][1:]]
    distinct = [a for i, a in enumerate(others) if a != expected["text"] and a not in others[:i]]
    assert answer == {"translatedText": expected["text"], "alternatives": distinct}
    assert 1 <= len(answer["alternatives"]) <= 3


def test_list_q_alternatives_and_auto_source(server: Server) -> None:
    answer = lt(server, "/translate", json={"q": TEXTS[:2], "source": "auto", "target": "de",
                                            "alternatives": 5}).json()
    expected = own(server, TEXTS[:2], beam=6, n_best=6)
    assert answer["translatedText"] == [t["text"] for t in expected]
    assert answer["detectedLanguage"] == [{"confidence": 100.0, "language": "en"}] * 2
    for alternatives, t in zip(answer["alternatives"], expected, strict=True):
        assert t["text"] not in alternatives and len(set(alternatives)) == len(alternatives)
        assert set(alternatives) <= {a["text"] for a in t["alternatives"]}
    single = lt(server, "/translate", json={"q": TEXTS[0], "source": "auto", "target": "de"})
    assert single.json()["detectedLanguage"] == {"confidence": 100.0, "language": "en"}
    assert "alternatives" not in single.json()


def test_forms_urlencoded_and_multipart(server: Server) -> None:
    expected = [t["text"] for t in own(server, TEXTS[:2])]
    fields = {"source": "en", "target": "de"}
    urlencoded = lt(server, "/translate", data={**fields, "q": TEXTS[0]})
    assert urlencoded.json() == {"translatedText": expected[0]}
    multipart = lt(server, "/translate", files={k: (None, v) for k, v in
                                                {**fields, "q": TEXTS[1]}.items()})
    assert multipart.json() == {"translatedText": expected[1]}
    repeated = lt(server, "/translate", data={**fields, "q": TEXTS[:2]})  # q=...&q=...
    assert repeated.json() == {"translatedText": expected}
    # A form's CRLF line breaks are LibreTranslate's LF ones
    two_lines = "Open the file.\nClose the window."
    crlf = lt(server, "/translate", data={**fields, "q": two_lines.replace("\n", "\r\n")})
    assert crlf.json() == {"translatedText": own(server, [two_lines])[0]["text"]}


def test_html_keeps_the_markup(server: Server) -> None:
    html = ('<p class="note">Open the <a href="/files?id=1&amp;x=2">file</a> with '
            "<kbd>Ctrl</kbd>+<kbd>O</kbd>.</p>")
    answer = lt(server, "/translate", json={"q": [html], "source": "en", "target": "de",
                                            "format": "html", "alternatives": 2}).json()
    for translated in answer["translatedText"] + answer["alternatives"][0]:
        for tag in ('<p class="note">', '<a href="/files?id=1&amp;x=2">', "</a>", "</p>",
                    "<kbd>", "</kbd>"):
            assert translated.count(tag) == html.count(tag), (tag, translated)
        assert translated.startswith('<p class="note">') and translated.endswith("</p>")
    many = "".join(f"<x{i}>word</x{i}>" for i in range(9))  # 18 distinct tags
    refused = lt(server, "/translate", json={"q": many, "source": "en", "target": "de",
                                             "format": "html"})
    assert refused.status_code == 400
    assert refused.json()["error"] == ("text 0: more than 16 distinct tags or placeholders; at "
                                       "most 16 can be kept through translation")


BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"json": {"source": "en", "target": "de"}}, 400, "missing q parameter"),
    ({"json": {"q": "", "source": "en", "target": "de"}}, 400, "missing q parameter"),
    ({"json": {"q": 5, "source": "en", "target": "de"}}, 400, "q must be a string or a list"),
    ({"json": {"q": ["a", 1], "source": "en", "target": "de"}}, 400, "list of strings"),
    ({"json": {"q": "a", "target": "de"}}, 400, "missing source parameter"),
    ({"json": {"q": "a", "source": ["en"], "target": "de"}}, 400, "source must be a string"),
    ({"json": {"q": "a", "source": "fr", "target": "de"}}, 400,
     f"fr is not supported as a source language: {OFFERED}"),
    ({"json": {"q": "a", "source": "de", "target": "en"}}, 400,
     f"de is not supported as a source language: {OFFERED}"),
    ({"json": {"q": "a", "source": "en", "target": "en"}}, 400,
     f"en is not supported as a target language: {OFFERED}"),
    ({"json": {"q": "a", "source": "en", "target": "de", "format": "xml"}}, 400,
     "xml format is not supported: use text or html"),
    ({"json": {"q": "a", "source": "en", "target": "de", "alternatives": "x"}}, 400,
     "alternatives parameter is not a number"),
    ({"json": {"q": "a", "source": "en", "target": "de", "alternatives": True}}, 400,
     "alternatives parameter is not a number"),
    ({"data": {"q": "a", "source": "en", "target": "de", "alternatives": "2.5"}}, 400,
     "alternatives parameter is not a number"),
    ({"json": {"q": "a", "source": "en", "target": "de", "alternatives": 8}}, 400,
     "alternatives parameter must be <= 7 (SERVICE_MAX_BEAM_SIZE - 1)"),
    ({"json": ["q", "a"]}, 400, "Invalid JSON format: send a JSON object"),
    ({"content": b'{"q": "a",', "headers": {"content-type": "application/json"}}, 400,
     "Invalid JSON format"),
    ({"content": b'{"q": "\xff"}', "headers": {"content-type": "application/json"}}, 400,
     "Invalid JSON format"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400,
     "Invalid form body"),
    ({"files": {"q": ("a.txt", b"text"), "source": (None, "en"), "target": (None, "de")}},
     400, "q must be a string or a list"),
    ({"json": {"q": "x" * 2001, "source": "en", "target": "de"}}, 400,
     "text 0 has 2001 characters; the limit is 2000 (SERVICE_MAX_TEXT_CHARS)"),
    ({"json": {"q": ["a"] * 65, "source": "en", "target": "de"}}, 400,
     "65 texts in one request; the limit is 64 (SERVICE_MAX_TEXTS)"),
    ({"json": {"q": " ".join(["word"] * 400), "source": "en", "target": "de"}}, 400,
     "(SERVICE_MAX_INPUT_TOKENS)"),
    ({"content": b"q=" + b"a" * 1_000_001,
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400,
     "(SERVICE_MAX_BODY_BYTES)"),
]


@pytest.mark.parametrize(("request_", "status", "message"), BAD,
                         ids=[f"{i}-{m[:30]}" for i, (_, _, m) in enumerate(BAD)])
def test_bad_input_gets_their_error_shape(server: Server, request_: dict[str, Any],
                                          status: int, message: str) -> None:
    response = lt(server, "/translate", **request_)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert message in body["error"], body


def test_other_errors_on_the_surface_and_the_service_keeps_its_shape(server: Server) -> None:
    assert httpx.get(server.url + "/libretranslate/translate").json() == {
        "error": "Method Not Allowed"}
    missing = httpx.get(server.url + "/libretranslate/translate_file")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    own_error = httpx.post(server.url + "/translate", json={"text": "a", "beam_size": 99})
    assert own_error.status_code == 422 and own_error.json()["error"]["code"]


def test_busy_is_429_and_not_ready_is_503(configured: Server, tmp_path: Path) -> None:
    busy = lt(configured, "/translate", prefix="/lt/v1", json={
        "q": ["one", "two"], "source": "en", "target": "de", "api_key": "key-one"})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"].startswith("Slowdown: ")
    loading = start_server(tmp_path, bundle=tmp_path / "no-such-bundle")
    try:
        response = lt(loading, "/translate", json={"q": "a", "source": "en", "target": "de"})
        assert response.status_code == 503
        assert "no-such-bundle" in response.json()["error"]
    finally:
        loading.stop()


def test_prefix_is_configurable_and_frontend_settings(configured: Server) -> None:
    assert httpx.get(configured.url + "/libretranslate/languages").status_code == 404
    settings = httpx.get(configured.url + "/lt/v1/frontend/settings").json()
    assert settings["charLimit"] == 2000 and settings["keyRequired"] is True
    assert settings["language"] == {"source": {"code": "en", "name": "English"},
                                    "target": {"code": "de", "name": "German"}}


def test_the_surface_has_its_own_metrics_labels(server: Server) -> None:
    before = httpx.get(server.url + "/metrics", timeout=10).text
    assert lt(server, "/translate", json={"q": "Open", "source": "en", "target": "de"}
              ).status_code == 200
    after = httpx.get(server.url + "/metrics", timeout=10).text
    sample = 'translate_http_requests_total{route="/libretranslate/translate",status="200"}'
    assert sample in after
    count = {text: float(next((line.split()[-1] for line in text.splitlines()
                               if line.startswith(sample)), "0")) for text in (before, after)}
    assert count[after] == count[before] + 1
