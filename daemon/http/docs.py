"""`/docs`: Swagger UI from assets vendored in the package (npm `swagger-ui-dist`, Apache-2.0), no CDN.

`/openapi.json` is FastAPI's own schema route. The assets are under daemon/http/static/swagger (see VERSION).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).resolve().parent / "static" / "swagger"
PREFIX = "/static/swagger"


def mount(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="swagger")


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="asrbox API",
        swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
    )
