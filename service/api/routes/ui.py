"""The QA page at /ui: static HTML, JS and CSS shipped in the package (no CDN: plants are
offline). The page is public; the data it loads needs a ``read`` key, typed into the page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["ui"])
assets = StaticFiles(directory=STATIC)


@router.get("/ui", response_class=FileResponse, include_in_schema=False)
def page() -> FileResponse:
    """The defect history page."""
    return FileResponse(STATIC / "index.html")
