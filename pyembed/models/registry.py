"""The model registry: versions are rows, their files live in pyembed.model_artifacts.

Registering reads a sentence-transformers folder (or a model shipped in a Python package), an
embedding model or a cross-encoder reranker (folders.py), records what the model is (task,
dimensions, window, pooling, normalization, prefixes) and stores every file as bytea parts with
the sha256 that identifies the whole folder, in one transaction: a registration that is
interrupted leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.models import artifacts, folders, loading, runtimes

logger = logging.getLogger(__name__)

PART_BYTES = 8 << 20  # 8 MiB a part: far below bytea's 1 GB limit, few rows per file


@dataclasses.dataclass(frozen=True)
class Registered:
    """A newly registered version."""

    id: int
    model: str
    version: int
    sha256: str
    size: int
    files: int


def register(
    db: database.Database,
    name: str,
    source: str,
    *,
    parent_version_id: int | None = None,
    kind: str | None = None,
    produced_by: dict[str, Any] | None = None,
    query_prefix: str | None = None,
    document_prefix: str | None = None,
    description: str = "",
) -> Registered:
    """Register the model at ``source`` as the next version of model ``name``."""
    folder = folders.resolve_source(source)
    info = folders.inspect(folder)
    if query_prefix is not None or document_prefix is not None:
        info = dataclasses.replace(
            info,
            query_prefix=info.query_prefix if query_prefix is None else query_prefix,
            document_prefix=info.document_prefix if document_prefix is None else document_prefix,
        )
    return store(
        db,
        name,
        folder,
        info,
        base_model=source,
        parent_version_id=parent_version_id,
        kind=kind or ("pretrained" if parent_version_id is None else "fine_tuned"),
        produced_by={"how": "registered", "source": source, **(produced_by or {})},
        description=description,
    )


def store(
    db: database.Database,
    name: str,
    folder: Path,
    info: folders.ModelInfo,
    *,
    base_model: str,
    parent_version_id: int | None,
    kind: str,
    produced_by: dict[str, Any],
    runtime: runtimes.Runtime = "sentence-transformers",
    precision: str = "fp32",
    description: str = "",
) -> Registered:
    """Store ``folder`` (already inspected) as the next version of ``name``, in one transaction."""
    entries = artifacts.manifest(folder)
    sha256 = artifacts.manifest_sha256(entries)
    size = sum(entry.size for entry in entries)
    with db.session() as conn, conn.transaction():
        model_id = upsert_family(conn, name, info, base_model, description, str(folder))
        row = conn.execute(
            queries.get("model_version_insert"),
            {
                "model_id": model_id,
                "parent": parent_version_id,
                "kind": kind,
                "runtime": runtime,
                "precision": precision,
                "produced_by": Jsonb(produced_by),
            },
        ).fetchone()
        assert row is not None
        version_id, version = row
        _upload(conn, version_id, folder, entries)
        conn.execute(
            queries.get("model_version_ready"), {"id": version_id, "sha256": sha256, "size": size}
        )
    logger.info(
        "registered %s v%s (id %s): %d files, %.1f MB",
        name,
        version,
        version_id,
        len(entries),
        size / 1e6,
    )
    return Registered(version_id, name, version, sha256, size, len(entries))


def upsert_family(
    conn: psycopg.Connection,
    name: str,
    info: folders.ModelInfo,
    base_model: str,
    description: str,
    what: str,
) -> int:
    """The id of family ``name`` (created if new), locked for the transaction; ``what`` (a
    folder, an endpoint) must match its task and dimensions."""
    params = {"name": name, "base_model": base_model, "description": description}
    family = conn.execute(
        queries.get("model_family_upsert"), {**params, **dataclasses.asdict(info)}
    ).fetchone()
    assert family is not None
    model_id, family_dims, family_task = family
    if family_task != info.task:
        raise errors.ModelError(
            f"model {name!r} is {_a(family_task)} model, but {what} is {_a(info.task)}",
            hint="register it under a new model name",
        )
    if family_dims != info.dimensions:
        raise errors.ModelError(
            f"model {name!r} is {family_dims}-dimensional, but {what} embeds into "
            f"{info.dimensions} dimensions",
            hint="register it under a new model name; a collection switches to it with "
            "`pyembed models promote COLLECTION VERSION --change-model`",
        )
    return int(model_id)


def _a(task: str) -> str:
    return "an embedding" if task == "embedding" else "a reranker"


def _upload(
    conn: psycopg.Connection, version_id: int, folder: Path, entries: list[artifacts.FileEntry]
) -> None:
    with conn.cursor() as cur, cur.copy(queries.get("copy_model_artifacts")) as copy:
        copy.set_types(["int8", "text", "int4", "bytea"])
        for entry in entries:
            with (folder / entry.path).open("rb") as handle:
                part = 0
                while block := handle.read(PART_BYTES):
                    copy.write_row((version_id, entry.path, part, block))
                    part += 1
                if part == 0:  # an empty file still has to exist when the folder is rebuilt
                    copy.write_row((version_id, entry.path, 0, b""))


def resolve_version(conn: psycopg.Connection, ref: str | int) -> int:
    """A version id from an id or ``MODEL@VERSION`` (``MODEL`` alone: its newest ready version)."""
    text = str(ref)
    if text.isdigit():
        return int(text)
    name, _, number = text.rpartition("@") if "@" in text else (text, "", "")
    row = conn.execute(
        queries.get("model_version_by_name"),
        {"name": name, "version": int(number) if number.isdigit() else None},
    ).fetchone()
    if row is None:
        raise errors.ModelError(
            f"no model version {text!r}", hint="`pyembed models list` shows the registered ones"
        )
    return int(row[0])


def list_versions(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every version with its family, lineage and the collections it serves."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("model_versions_list"))
        return cur.fetchall()


def show(conn: psycopg.Connection, version_id: int) -> dict[str, Any]:
    """One version: its row, its files and its deployments."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("model_version_show"), {"id": version_id})
        found = cur.fetchone()
        if found is None:
            raise errors.ModelError(f"model version id {version_id} does not exist")
        cur.execute(queries.get("model_version_files"), {"id": version_id})
        found["files"] = cur.fetchall()
        cur.execute(queries.get("model_version_deployments"), {"id": version_id})
        found["deployments"] = cur.fetchall()
    return found


def export(db: database.Database, version_id: int, target: Path) -> Path:
    """Write the version's verified files into ``target`` (a new or empty folder)."""
    if target.exists() and any(target.iterdir()):
        raise errors.ModelError(f"{target} is not empty", hint="export into a new folder")
    with db.session() as conn:
        mv = loading.fetch_version(conn, version_id, task=None)
        folder = loading.materialize(conn, mv)
    shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def retire(db: database.Database, version_id: int, reason: str = "") -> int:
    """Mark a version retired and drop its stores; returns how many stores were dropped."""
    with db.session() as conn:
        row = conn.execute(
            queries.get("retire_version"), {"id": version_id, "reason": reason}
        ).fetchone()
    return int(row[0]) if row else 0
