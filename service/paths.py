"""The paths the service answers, defined once: the routes use them, and so do the
middleware (metrics labels, API keys), the connection edge (health checks) and the settings
(a LibreTranslate prefix may not shadow them)."""

from __future__ import annotations

TRANSLATE = "/translate"
MODEL = "/model"
MODELS = "/models"
GLOSSARIES = "/glossaries"
METRICS = "/metrics"
LIVE = "/health/live"
READY = "/health/ready"
PLAYGROUND = "/"
STATIC = "/static"
DOCS = "/docs"
REDOC = "/redoc"
OPENAPI = "/openapi.json"

HEALTH = frozenset({LIVE, READY})  # answered even when the connection cap is reached
LABELLED = (TRANSLATE, LIVE, READY, METRICS, MODEL, MODELS, GLOSSARIES,
            PLAYGROUND)  # their own metrics label
# Need an API key when keys are set (METRICS too with SERVICE_PROTECT_METRICS), and so does
# MODELS/<id>; the admin actions below it (POST MODELS/<id>/load...) have keys of their own.
KEYED = frozenset({TRANSLATE, MODEL, MODELS, GLOSSARIES})
# First path segments the service itself answers: no other surface may be mounted there.
OWN = tuple(sorted({"/" + p.split("/")[1] for p in (*LABELLED, STATIC, DOCS, REDOC, OPENAPI)
                    if p != PLAYGROUND}))
