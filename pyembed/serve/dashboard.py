"""`pyembed dashboard`: a live page of every collection's queue, workers, versions on a
timeline with their offline and online metrics, canaries with their interleaving score,
training runs and learning policies.

The page (dashboard.html, no external assets: it works offline) polls ``/api/state`` and redraws;
the state is a handful of named queries run as the dashboard's own role, so it shows what that
role may see: a section its role may not read (policies, canaries and online metrics need a
writer) is reported as
such instead of failing the page.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.resources
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from psycopg.rows import dict_row

from pyembed import errors
from pyembed.db import database, queries

logger = logging.getLogger(__name__)

# Section of the state -> its named query.
SECTIONS = {
    "collections": "dashboard_collections",
    "workers": "dashboard_workers",
    "versions": "dashboard_versions",
    "deployments": "dashboard_deployments",
    "training": "dashboard_training",
    "learning": "dashboard_learning",
    "canaries": "dashboard_canaries",
    "online": "dashboard_online",
}


def state(db: database.Database) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready rows per section (a section the role may not
    read is ``None``, with the reason under ``denied``)."""
    found: dict[str, Any] = {"at": datetime.datetime.now(datetime.UTC), "denied": {}}
    with db.session() as conn:
        for section, name in SECTIONS.items():
            try:
                with conn.cursor(row_factory=dict_row) as cur, errors.translated():
                    cur.execute(queries.get(name))
                    found[section] = cur.fetchall()
            except errors.PermissionDenied as exc:
                found[section] = None
                found["denied"][section] = exc.message
    return found


def page(refresh_seconds: float) -> str:
    """The page, told how often to poll."""
    text = importlib.resources.files(__package__).joinpath("dashboard.html").read_text("utf-8")
    return text.replace("__REFRESH_MS__", str(int(refresh_seconds * 1000)))


def create_app(db: database.Database, refresh_seconds: float = 2.0) -> FastAPI:
    """The dashboard's app: ``/`` the page, ``/api/state`` its data."""
    app = FastAPI(title="pyembed dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    html = page(refresh_seconds)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(html, headers=_HEADERS)

    @app.get("/api/state")
    async def api_state() -> JSONResponse:
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, state, db)
        except errors.PyembedError as exc:
            return JSONResponse(status_code=503, content={"error": str(exc)}, headers=_HEADERS)
        return JSONResponse(_plain(found), headers=_HEADERS)

    return app


# The page loads nothing from elsewhere and runs only its own script.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if hasattr(value, "__float__") and not isinstance(value, bool | int | float):
        return float(value)  # Decimal
    return value


def serve(
    db: database.Database,
    host: str = "127.0.0.1",
    port: int = 8002,
    *,
    refresh_seconds: float = 2.0,
    access_log: bool = False,
) -> None:
    """Serve the dashboard until interrupted."""
    import uvicorn

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    app = create_app(db, refresh_seconds)
    uvicorn.run(app, host=host, port=port, log_level=level, access_log=access_log)
