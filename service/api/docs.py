"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their scripts and styles served by the
service itself (``service/static/vendor/``, see its README), so they work without internet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

from service import paths

OAUTH2_REDIRECT = "/docs/oauth2-redirect"
# The pages may load nothing from elsewhere: ReDoc's bundle always asks cdn.redoc.ly for the
# logo in its footer, which this refuses before any request is made (the logo is left out).
# Both pages start the viewer from an inline script; ReDoc searches in a blob: worker.
POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
          "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:")
router = APIRouter(include_in_schema=False)


def root(request: Request) -> str:
    """The root path the app is mounted at (empty unless behind a path-prefixing proxy)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def vendor(request: Request, path: str) -> str:
    return f"{root(request)}/static/vendor/{path}"


def self_contained(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


@router.get(paths.DOCS)
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return self_contained(get_swagger_ui_html(
        openapi_url=root(request) + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=vendor(request, "swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=vendor(request, "swagger-ui/swagger-ui.css"),
        swagger_favicon_url=vendor(request, "swagger-ui/favicon-32x32.png"),
        oauth2_redirect_url=root(request) + OAUTH2_REDIRECT,
        init_oauth=app.swagger_ui_init_oauth,
        # validatorUrl null: no badge fetched from swagger.io
        swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None}))


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(paths.REDOC)
async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return self_contained(get_redoc_html(
        openapi_url=root(request) + app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=vendor(request, "redoc/redoc.standalone.js"),
        redoc_favicon_url=vendor(request, "swagger-ui/favicon-32x32.png"),
        with_google_fonts=False))
