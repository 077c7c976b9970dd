"""The admin-only settings of in-database embedding (pyembed.embed), kept in pyembed.settings.

They steer code inside the server process (which URL a backend calls, which Python path it
imports from), so they live in a table only pyembed's owner writes, never in a session's SET.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from pyembed import errors
from pyembed.db import queries

NAMES = ("embed_mode", "embed_url", "embed_timeout_ms", "python_path", "cache_dir")


def configure(conn: psycopg.Connection, settings: Mapping[str, str | None]) -> None:
    """Set (or, with None, clear) settings; run as the admin (a member of pyembed_owner)."""
    unknown = sorted(set(settings) - set(NAMES))
    if unknown:
        raise errors.ConfigError(
            f"unknown embedding setting(s): {', '.join(unknown)}", hint=f"known: {', '.join(NAMES)}"
        )
    with errors.translated(), conn.transaction():
        for name, value in settings.items():
            if value is None:
                conn.execute(queries.get("embed_setting_clear"), {"name": name})
            else:
                conn.execute(queries.get("embed_setting_set"), {"name": name, "value": value})


def current(conn: psycopg.Connection) -> dict[str, str]:
    """The settings in force (unset ones take pyembed.embed's defaults)."""
    with errors.translated():
        return dict(conn.execute(queries.get("embed_settings")).fetchall())
