"""Alembic operations for applications whose own migrations manage their collections.

In the application's ``env.py``::

    import pyembed.alembic_ops  # registers op.create_collection / op.drop_collection
    context.configure(..., include_name=pyembed.integrations.alembic_ops.include_name)

and in a revision::

    op.create_collection("docs", "public.docs", text_columns=["title", "body"])

Autogenerate: declare collections on the metadata with :func:`declare_collection`; a revision
then gets ``op.create_collection(...)``/``op.drop_collection(...)`` for the difference with the
database. ``include_name`` keeps pyembed's own schemas and tables out of the app's diffs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import comparators, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation, Operations
from alembic.operations.ops import UpgradeOps
from sqlalchemy.dialects.postgresql import JSONB, REGCLASS

_INFO_KEY = "pyembed_collections"
_PYEMBED_SCHEMAS = frozenset({"pyembed", "pyembed_store"})


@dataclasses.dataclass(frozen=True)
class CollectionSpec:
    """The arguments of pyembed.create_collection, as the application declares them."""

    name: str
    source: str
    text_columns: Sequence[str] | None = None
    template: str | None = None
    model: str = "all-MiniLM-L6-v2"
    distance: str = "cosine"
    chunk_tokens: int | None = None
    chunk_overlap: int = 32
    enqueue_existing: bool = True
    index_options: Mapping[str, Any] | None = None  # e.g. {"storage": "halfvec"}
    embedding_column: str | None = None  # the application's own vectors, adopted

    def call(self) -> sa.Select[Any]:
        text_columns = list(self.text_columns) if self.text_columns is not None else None
        return sa.select(
            sa.func.pyembed.create_collection(
                self.name,
                sa.cast(self.source, REGCLASS),
                sa.cast(text_columns, sa.ARRAY(sa.Text)),
                self.template,
                self.model,
                self.distance,
                self.chunk_tokens,
                self.chunk_overlap,
                self.enqueue_existing,
                "hnsw",
                None,
                sa.cast(dict(self.index_options), JSONB) if self.index_options else sa.null(),
                self.embedding_column,
            )
        )


@Operations.register_operation("create_collection")
class CreateCollectionOp(MigrateOperation):
    """``op.create_collection(name, source, text_columns=..., template=..., ...)``."""

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec

    @classmethod
    def create_collection(
        cls, operations: Operations, name: str, source: str, **options: Any
    ) -> None:
        """Register ``source`` as collection ``name`` (see pyembed.create_collection)."""
        operations.invoke(cls(CollectionSpec(name, source, **options)))

    def reverse(self) -> DropCollectionOp:
        return DropCollectionOp(self.spec.name, spec=self.spec)


@Operations.register_operation("drop_collection")
class DropCollectionOp(MigrateOperation):
    """``op.drop_collection(name, keep_store=False)``."""

    def __init__(
        self, name: str, *, keep_store: bool = False, spec: CollectionSpec | None = None
    ) -> None:
        self.name = name
        self.keep_store = keep_store
        self.spec = spec

    @classmethod
    def drop_collection(
        cls, operations: Operations, name: str, *, keep_store: bool = False, **spec: Any
    ) -> None:
        """Unregister collection ``name``; pass its create arguments to make it reversible."""
        recreate = CollectionSpec(name, **spec) if spec else None
        operations.invoke(cls(name, keep_store=keep_store, spec=recreate))

    def reverse(self) -> CreateCollectionOp:
        if self.spec is None:
            raise ValueError(
                f"drop_collection({self.name!r}) cannot be reversed without the collection's "
                "definition: pass source=..., text_columns=... or template=... to it"
            )
        return CreateCollectionOp(self.spec)


@Operations.implementation_for(CreateCollectionOp)
def _create(operations: Operations, operation: CreateCollectionOp) -> None:
    operations.execute(operation.spec.call())


@Operations.implementation_for(DropCollectionOp)
def _drop(operations: Operations, operation: DropCollectionOp) -> None:
    operations.execute(
        sa.select(sa.func.pyembed.drop_collection(operation.name, operation.keep_store))
    )


def declare_collection(metadata: sa.MetaData, name: str, source: str, **options: Any) -> None:
    """Declare on the metadata a collection autogenerate should create when it is missing."""
    metadata.info.setdefault(_INFO_KEY, {})[name] = CollectionSpec(name, source, **options)


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """An ``include_name`` hook hiding pyembed's schemas and version table from the app."""
    if type_ == "schema":
        return name not in _PYEMBED_SCHEMAS
    return not (type_ == "table" and name == "pyembed_alembic_version")


@comparators.dispatch_for("schema")
def _compare_collections(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> None:
    metadatas = autogen_context.metadata
    if metadatas is None or autogen_context.connection is None:
        return
    declared: dict[str, CollectionSpec] = {}
    tables: set[str] = set()
    for metadata in metadatas if isinstance(metadatas, Sequence) else [metadatas]:
        declared.update(metadata.info.get(_INFO_KEY, {}))
        tables.update(metadata.tables)
    default_schema = autogen_context.connection.dialect.default_schema_name
    # Only collections over the app's own tables are its business; others (made by a DBA in
    # SQL, or by another app) are never proposed for dropping.
    existing = {
        name: spec
        for name, spec, schema, table in _existing_collections(autogen_context.connection)
        if (table if schema == default_schema else f"{schema}.{table}") in tables
    }
    for name in sorted(set(declared) - set(existing)):
        upgrade_ops.ops.append(CreateCollectionOp(declared[name]))
    for name in sorted(set(existing) - set(declared)):
        upgrade_ops.ops.append(DropCollectionOp(name, spec=existing[name]))


def _existing_collections(conn: sa.Connection) -> list[tuple[str, CollectionSpec, str, str]]:
    """The database's collections as specs (so a drop can be reversed), with their source."""
    if conn.execute(sa.select(sa.func.to_regclass("pyembed.collections"))).scalar() is None:
        return []
    c = sa.table(
        "collections",
        sa.column("name"),
        sa.column("source_schema"),
        sa.column("source_table"),
        sa.column("text_columns"),
        sa.column("text_template"),
        sa.column("distance"),
        sa.column("chunk_tokens"),
        sa.column("chunk_overlap"),
        sa.column("model_id"),
        sa.column("index_options"),
        sa.column("settings"),
        schema="pyembed",
    )
    m = sa.table("models", sa.column("id"), sa.column("name"), schema="pyembed")
    source = sa.func.format("%I.%I", c.c.source_schema, c.c.source_table).label("source")
    query = sa.select(c, source, m.c.name.label("model")).join(m, m.c.id == c.c.model_id)
    specs = []
    for row in conn.execute(query).mappings():
        spec = CollectionSpec(
            name=row["name"],
            source=row["source"],
            text_columns=row["text_columns"],
            template=row["text_template"],
            model=row["model"],
            distance=row["distance"],
            chunk_tokens=row["chunk_tokens"],
            chunk_overlap=row["chunk_overlap"],
            # Only how the vectors are kept: tuned settings belong to the index that exists.
            index_options={"storage": row["index_options"]["storage"]}
            if (row["index_options"] or {}).get("storage")
            else None,
            embedding_column=(row["settings"] or {}).get("embedding_column"),
        )
        specs.append((spec.name, spec, row["source_schema"], row["source_table"]))
    return specs


def _spec_arguments(spec: CollectionSpec) -> str:
    defaults = CollectionSpec(spec.name, spec.source)
    args = [repr(spec.name), repr(spec.source)]
    for field in dataclasses.fields(spec)[2:]:
        value = getattr(spec, field.name)
        if value != getattr(defaults, field.name):
            rendered = list(value) if field.name == "text_columns" and value else value
            args.append(f"{field.name}={rendered!r}")
    return ", ".join(args)


@renderers.dispatch_for(CreateCollectionOp)
def _render_create(autogen_context: AutogenContext, op: CreateCollectionOp) -> str:
    return f"op.create_collection({_spec_arguments(op.spec)})"


@renderers.dispatch_for(DropCollectionOp)
def _render_drop(autogen_context: AutogenContext, op: DropCollectionOp) -> str:
    if op.spec is None:
        return f"op.drop_collection({op.name!r})"
    return f"op.drop_collection({_spec_arguments(op.spec)})"
