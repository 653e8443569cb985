"""A LibreTranslate-compatible API (``SERVICE_LIBRETRANSLATE_PREFIX``) for the clients that
speak it: Weblate, SearXNG, libretranslatepy, deep-translator. The shapes follow
LibreTranslate's ``libretranslate/app.py``; translation goes through the service's own path."""

from service.api.libretranslate.errors import LibreErrors
from service.api.libretranslate.routes import router

__all__ = ["LibreErrors", "router"]
