"""What `pyembed db status` reports about a database."""

from __future__ import annotations

import dataclasses

from psycopg.rows import dict_row

from pyembed.db import connection, database, migrate, queries


@dataclasses.dataclass(frozen=True)
class DatabaseStatus:
    """The server, pgvector and pyembed's schema revision, as seen through one connection."""

    where: str
    server_version: str
    database: str
    user: str
    pgvector_version: str | None
    in_recovery: bool
    revision: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """True when the schema is at this package's newest revision."""
        return self.revision == self.head


def database_status(db: database.Database) -> DatabaseStatus:
    """Connect and report; raises a PyembedError when the server cannot be reached."""
    with db.session() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("server_overview"))
        row = cur.fetchone()
    assert row is not None
    return DatabaseStatus(
        where=connection.describe(db.dsn),
        server_version=row["server_version"],
        database=row["database"],
        user=row["user"],
        pgvector_version=row["pgvector_version"],
        in_recovery=row["in_recovery"],
        revision=migrate.current(db),
        head=migrate.heads()[0],
    )
