"""/docs and /redoc in a real browser with the outside network cut off: every request not to
the test server is aborted and recorded, so the pages must render from the service alone."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.conftest import CHROMIUM, Server

try:
    from playwright.sync_api import Browser, Error, Page, Route
except ImportError:
    pytest.skip("playwright is not installed: pip install playwright (the dev extra has it)",
                allow_module_level=True)

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: make tools installs Debian's chromium",
                allow_module_level=True)


class Offline:
    """A page whose requests reach only ``host``; the others are aborted and listed."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.host = urlsplit(server.url).netloc
        self.blocked: list[str] = []
        self.served: list[str] = []
        self.errors: list[Error] = []
        self.console: list[str] = []  # errors the page logged (a refused load among them)
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self.route)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(error))
        self.page.on("console", lambda message: self.console.append(message.text)
                     if message.type == "error" else None)

    def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == self.host:
            self.served.append(urlsplit(url).path)
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser: Browser, server: Server) -> Iterator[Offline]:
    page = Offline(browser, server)
    yield page
    page.context.close()


def test_swagger_ui_renders_from_the_service_alone(offline: Offline, server: Server) -> None:
    offline.page.goto(server.url + "/docs")
    offline.page.wait_for_selector(".opblock-summary-path[data-path='/translate']",
                                   timeout=30_000)
    title = offline.page.locator(".info .title").text_content() or ""
    assert "attn-translate" in title
    # The operations of the schema, ours and the LibreTranslate ones, are listed.
    paths = set(offline.page.locator(".opblock-summary-path").evaluate_all(
        "nodes => nodes.map(n => n.dataset.path)"))
    assert {"/translate", "/health/ready", "/libretranslate/translate"} <= paths
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in offline.served
    assert "/openapi.json" in offline.served
    assert not offline.blocked, f"requests off the service: {offline.blocked}"
    assert not offline.errors and not offline.console, (offline.errors, offline.console)


def test_redoc_renders_from_the_service_alone(offline: Offline, server: Server) -> None:
    offline.page.goto(server.url + "/redoc")
    offline.page.wait_for_selector("text=Translate one text or a list of texts",
                                   timeout=30_000)
    assert offline.page.locator("h1").first.text_content() == "attn-translate (0.1.0)"
    assert offline.page.locator("[data-section-id='operation/translate_translate_post']"
                                ).count() == 1
    assert "/static/vendor/redoc/redoc.standalone.js" in offline.served
    assert not offline.blocked, f"requests off the service: {offline.blocked}"
    assert not offline.errors, offline.errors
    # The page's policy refuses ReDoc's footer logo from its CDN before any request is made;
    # nothing else is refused (a policy too strict for the viewer would show here).
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in m for m in offline.console), \
        offline.console


def test_oauth2_redirect_page_and_vendored_files_are_served(server: Server) -> None:
    redirect = httpx.get(server.url + "/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "swaggerUIRedirectOauth2" in redirect.text
    for path, media in [("swagger-ui/swagger-ui-bundle.js", "javascript"),
                        ("swagger-ui/swagger-ui.css", "text/css"),
                        ("redoc/redoc.standalone.js", "javascript")]:
        response = httpx.get(f"{server.url}/static/vendor/{path}")
        assert response.status_code == 200 and media in response.headers["content-type"]
    html = httpx.get(server.url + "/docs").text + httpx.get(server.url + "/redoc").text
    assert "cdn.jsdelivr.net" not in html and "fonts.googleapis.com" not in html
