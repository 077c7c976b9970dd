"""The demo: start the embedded database and migrate it (later stages join as they land)."""

from __future__ import annotations

import dataclasses
import logging

from pyembed import embedded, migrate, status

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo leaves behind for the user to look at."""

    dsn: str
    database: status.DatabaseStatus
    queries_to_try: tuple[str, ...]


def run(*, quick: bool = False) -> DemoResult:
    """Start the embedded server, migrate it, and report; safe to run again."""
    server = embedded.EmbeddedServer()
    logger.info("starting the embedded PostgreSQL in %s", server.home)
    dsn = server.start().dsn
    assert dsn is not None
    logger.info("migrating the database to pyembed's newest schema")
    migrate.upgrade(dsn)
    return DemoResult(
        dsn=dsn,
        database=status.database_status(dsn),
        queries_to_try=(
            r"\dt pyembed.*",
            "SELECT pyembed.schema_revision();",
            "SELECT * FROM pyembed.worker_status;",
        ),
    )
