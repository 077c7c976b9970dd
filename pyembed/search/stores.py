"""A collection's store tables as Python sees them: names, types and operators come from SQL.

The facts (store name, vector or halfvec, binary storage, the distance's operator, what an ANN
index keys) are derived once, by pyembed's SQL helpers (sql/idempotent/005_helpers.sql), and
read here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from pyembed import errors
from pyembed.db import queries


@dataclasses.dataclass(frozen=True)
class Store:
    """The active store table of a collection."""

    id: int
    name: str
    distance: str
    version_id: int
    dimensions: int
    store: str
    vector_kind: str
    operator: str
    index_key: str
    storage: str
    binary_key: str
    rerank: int

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier("pyembed_store", self.store)

    # The names below come from pyembed's own SQL functions, never from input.
    @property
    def vector_type(self) -> sql.SQL:
        return sql.SQL(self.vector_kind)

    @property
    def operator_sql(self) -> sql.SQL:
        return sql.SQL(self.operator)

    @property
    def index_key_sql(self) -> sql.SQL:
        return sql.SQL(self.index_key)

    @property
    def binary_key_sql(self) -> sql.SQL:
        return sql.SQL(self.binary_key)

    def index_name(self, method: str) -> str:
        return f"{self.store}_{method}"


def store_of(conn: psycopg.Connection, collection: str, version_id: int | None = None) -> Store:
    """The store of the collection's version (default: active), or a clear error."""
    with conn.cursor(row_factory=class_row(Store)) as cur:
        cur.execute(queries.get("collection_store"), {"name": collection, "version_id": version_id})
        found = cur.fetchone()
    if found is None:
        raise errors.CollectionError(
            f"collection {collection!r} does not exist",
            hint="list collections with SELECT * FROM pyembed.collection_status",
        )
    return found


def list_indexes(conn: psycopg.Connection, store: str | None = None) -> list[dict[str, Any]]:
    """ANN indexes on store tables, with their latest recorded recall."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("store_indexes"), {"store": store})
        return cur.fetchall()
