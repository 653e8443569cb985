"""The attention playground: static files served by the service itself (no CDN, no build)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service import paths

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


@router.get(paths.PLAYGROUND, include_in_schema=False)
async def playground() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")
