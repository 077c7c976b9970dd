"""Eval sets from files: a BEIR folder or JSONL, checked against the collection's rows.

BEIR corpus ids are matched to the collection's (single-column) primary key. Judgments of
documents the collection does not hold are reported, and kept out unless asked: they could
only count against recall.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries
from pyembed.evaluation import retrieval

logger = logging.getLogger(__name__)

Judged = list[tuple[str, dict[tuple[Any, ...], float]]]


def import_beir(
    conn: psycopg.Connection,
    collection: str,
    folder: Path,
    *,
    split: str = "test",
    name: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Queries and qrels of a BEIR folder (queries.jsonl, qrels/SPLIT.tsv) as an eval set."""
    qrels = folder / "qrels" / f"{split}.tsv"
    if not (folder / "queries.jsonl").is_file() or not qrels.is_file():
        raise errors.ConfigError(
            f"{folder} is not a BEIR folder with queries.jsonl and qrels/{split}.tsv",
            hint="point at the folder that holds corpus.jsonl, queries.jsonl and qrels/",
        )
    texts: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                texts[str(row["_id"])] = str(row["text"])
            except (ValueError, KeyError) as exc:
                raise errors.ConfigError(f"queries.jsonl, line {number}: {exc!r}") from exc
    grouped: dict[str, dict[tuple[Any, ...], float]] = {}
    with qrels.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, fields in enumerate(reader, start=1):
            if number == 1 and not fields[-1].lstrip("-").replace(".", "").isdigit():
                continue  # the header line
            if len(fields) != 3 or fields[0] not in texts:
                raise errors.ConfigError(
                    f"{qrels.name}, line {number}: expected query-id, corpus-id, score of a "
                    "known query"
                )
            grouped.setdefault(fields[0], {})[(fields[1],)] = float(fields[2])
    judged = [(texts[q], rels) for q, rels in grouped.items()]
    return _store(
        conn,
        collection,
        name or f"beir {folder.name} {split}",
        "beir",
        judged,
        {"folder": str(folder), "split": split},
    )


def import_jsonl(
    conn: psycopg.Connection, collection: str, path: Path, *, name: str | None = None
) -> tuple[int, dict[str, Any]]:
    """{"query": ..., "relevant": {"<pk>": grade, ...}} or {"query", "relevant": [pk, ...]}."""
    judged: Judged = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            relevant = row["relevant"]
            if isinstance(relevant, list):
                relevant = dict.fromkeys(map(str, relevant), 1.0)
            judged.append((str(row["query"]), {_key(pk): float(g) for pk, g in relevant.items()}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.ConfigError(
                f"{path.name}, line {number}: {exc!r}",
                hint='each line: {"query": "...", "relevant": {"42": 1}} or a list of keys',
            ) from exc
    return _store(
        conn, collection, name or f"jsonl {path.stem}", "jsonl", judged, {"file": str(path)}
    )


def _key(text: str) -> tuple[Any, ...]:
    """A key given as JSON (a composite key's array, a number) or as plain text."""
    try:
        value = json.loads(text)
    except ValueError:
        return (text,)
    return tuple(value) if isinstance(value, list) else (value,)


_INTEGER_TYPES = {"smallint", "integer", "bigint"}


def _typed(key: tuple[Any, ...], types: list[str]) -> tuple[Any, ...]:
    if len(key) != len(types):
        return key
    return tuple(
        int(v) if t in _INTEGER_TYPES and isinstance(v, str) and v.lstrip("-").isdigit() else v
        for v, t in zip(key, types, strict=True)
    )


def _store(
    conn: psycopg.Connection,
    collection: str,
    name: str,
    source: str,
    judged: Judged,
    details: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    if not judged:
        raise errors.ConfigError(f"{name}: no judged queries to import")
    row = conn.execute(queries.get("collection_pk_types"), {"name": collection}).fetchone()
    if row is None:
        raise errors.CollectionError(f"collection {collection!r} does not exist")
    # Keys from files are text; the search returns them typed: compare like with like.
    judged = [(q, {_typed(k, row[0]): g for k, g in rels.items()}) for q, rels in judged]
    keys = {key for _, rels in judged for key in rels}
    known = {
        tuple(pk)
        for pk, _, exists in conn.execute(
            queries.get("source_rows"),
            {
                "collection": collection,
                "keys": Jsonb([list(k) for k in keys]),
            },
        )
        if exists
    }
    unknown = keys - known
    if unknown:
        logger.warning(
            "%s: %d judged documents are not rows of %s (e.g. %s); left out",
            name,
            len(unknown),
            collection,
            sorted(map(str, unknown))[:3],
        )
    kept = [(q, {k: g for k, g in rels.items() if k in known}) for q, rels in judged]
    summary = {
        **details,
        "queries": len(kept),
        "judgments": sum(len(r) for _, r in kept),
        "unknown_documents": len(unknown),
    }
    set_id = retrieval.create_set(conn, collection, name, source, kept, details=summary)
    return set_id, summary
