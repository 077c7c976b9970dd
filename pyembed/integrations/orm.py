"""SQLAlchemy constructs for calling pyembed.search from Core and ORM queries.

    from pyembed.integrations import orm

    hits = orm.search("docs", query_vector, k=5)
    stmt = (
        select(Doc, hits.c.similarity, hits.c.query_id)
        .join(hits, Doc.id == orm.key(hits, Doc.id))
        .order_by(hits.c.rank)
    )

The query vector is cast to ``vector`` so the vector form of pyembed.search is chosen.
The search's log rows are written in the caller's transaction: commit the session to keep them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

COLUMNS = (
    sa.column("query_id", sa.BigInteger),
    sa.column("rank", sa.Integer),
    sa.column("pk", JSONB),
    sa.column("chunk", sa.Text),
    sa.column("distance", sa.Float),
    sa.column("similarity", sa.Float),
    sa.column("rerank_score", sa.Float),
)


def search(
    collection: str,
    query: Any,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int | None = None,
    probes: int | None = None,
    log: bool | None = None,
    query_text: str | None = None,
    rerank: int | None = None,
    reranker: str | None = None,
    name: str = "hits",
) -> TableValuedAlias:
    """``pyembed.search(...)`` as a table: query_id, rank, pk, chunk, distance, similarity,
    rerank_score."""
    call = sa.func.pyembed.search(
        collection,
        sa.cast(sa.bindparam(None, query, type_=VECTOR()), VECTOR()),
        k,
        # No filter is SQL NULL, not the JSON value null (which pyembed.search refuses).
        sa.cast(sa.bindparam(None, filter, type_=JSONB(none_as_null=True)), JSONB()),
        sa.cast(ef_search, sa.Integer),
        sa.cast(probes, sa.Integer),
        sa.cast(log, sa.Boolean),
        sa.cast(query_text, sa.Text),
        sa.cast(rerank, sa.Integer),
        sa.cast(reranker, sa.Text),
    )
    return call.table_valued(*COLUMNS, name=name)


def key(hits: TableValuedAlias, like: Any = sa.BigInteger, position: int = 0) -> ColumnElement[Any]:
    """Column ``position`` of a hit's primary key, cast for a join: to the type of ``like``, the
    key column it is compared with (``orm.key(hits, Doc.id)``), or to ``like`` itself, a type."""
    type_ = like.type if isinstance(like, ColumnElement | sa.orm.InstrumentedAttribute) else like
    return sa.cast(hits.c.pk.op("->>")(position), type_)
