"""ReDoc served from here, with nothing fetched from outside.

fastapi-offline ships the Swagger UI and ReDoc assets; ReDoc's bundle still draws its
"API docs by Redocly" badge from ``cdn.redoc.ly``. This serves a copy of the bundle with that
one address replaced by an inline image, so the docs page makes no outside request at all.
"""

from __future__ import annotations

import functools
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

__all__ = ["install_redoc"]

_BUNDLE = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
_OUTSIDE_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_INLINE_LOGO = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@functools.cache
def _bundle() -> bytes:
    return _BUNDLE.read_bytes().replace(_OUTSIDE_LOGO, _INLINE_LOGO)


def install_redoc(app: FastAPI, *, path: str = "/redoc") -> None:
    """``path`` serves ReDoc; its script comes from ``/docs-assets/redoc.standalone.js``."""

    @app.get(path, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
            redoc_favicon_url=f"{root}/static-offline-docs/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/docs-assets/redoc.standalone.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        return Response(
            _bundle(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )
