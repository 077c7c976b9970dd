"""Eval sets: judged queries of a collection, stored, loaded, and imported from BEIR or JSONL.

Imported sets are checked against the collection's rows.

BEIR corpus ids are matched to the collection's (single-column) primary key. Judgments of
documents the collection does not hold are reported, and kept out unless asked: they could
only count against recall.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries

logger = logging.getLogger(__name__)

Judged = list[tuple[str, dict[tuple[Any, ...], float]]]
Key = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class EvalQuery:
    """One query of an eval set with its graded judgments."""

    id: int
    text: str
    judgments: dict[Key, float]


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """An eval set as loaded for one evaluation."""

    id: int
    name: str
    queries: list[EvalQuery]


def load_set(conn: psycopg.Connection, collection: str, name: str | None = None) -> EvalSet:
    """An eval set with its judged queries (queries without a positive judgment are left out)."""
    found = conn.execute(
        queries.get("eval_set_find"), {"collection": collection, "name": name}
    ).fetchone()
    if found is None:
        raise errors.CollectionError(
            f"collection {collection!r} has no eval set{f' named {name!r}' if name else ''}",
            hint="train from the query log (it saves a held-out set), import one, or label "
            "queries by hand into pyembed.eval_queries / eval_judgments",
        )
    judged: dict[int, tuple[str, dict[Key, float]]] = {}
    for query_id, text, pk, grade in conn.execute(
        queries.get("eval_set_judgments"), {"id": found[0]}
    ):
        entry = judged.setdefault(query_id, (text, {}))
        if pk is not None and grade > 0:
            entry[1][tuple(pk)] = float(grade)
    usable = [EvalQuery(i, text, j) for i, (text, j) in judged.items() if j]
    if not usable:
        raise errors.CollectionError(
            f"eval set {found[1]!r} of {collection!r} has no query with a relevant judgment",
            hint="add judgments (grade > 0) to pyembed.eval_judgments",
        )
    return EvalSet(found[0], found[1], usable)


def create_set(
    conn: psycopg.Connection,
    collection: str,
    name: str,
    source: str,
    judged: list[tuple[str, dict[Key, float]]],
    *,
    description: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """Store an eval set (queries and graded judgments); returns its id."""
    with conn.transaction():
        row = conn.execute(
            queries.get("eval_set_create"),
            {
                "collection": collection,
                "name": name,
                "source": source,
                "description": description,
                "details": Jsonb(details or {}),
            },
        ).fetchone()
        if row is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        set_id = int(row[0])
        # One statement for all queries and judgments; a query given twice keeps its best grades.
        merged: dict[str, dict[Key, float]] = {}
        for text, judgments in judged:
            grades = merged.setdefault(text, {})
            for pk, grade in judgments.items():
                grades[pk] = max(grade, grades.get(pk, grade))
        conn.execute(
            queries.get("eval_set_fill"),
            {
                "set_id": set_id,
                "texts": list(merged),
                "judgments": Jsonb(
                    [
                        {"query_text": text, "pk": list(pk), "grade": grade}
                        for text, grades in merged.items()
                        for pk, grade in grades.items()
                    ]
                ),
            },
        )
    return set_id


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
    set_id = create_set(conn, collection, name, source, kept, details=summary)
    return set_id, summary
