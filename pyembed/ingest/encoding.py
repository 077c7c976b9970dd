"""Chunking and embedding a claimed batch, with no transaction open.

A local model embeds all chunks of a version in one sorted call; an endpoint gets one request's
worth of rows at a time. A failure is kept per item: a text that fails alone is found by
encoding row by row, while an endpoint's own trouble (a refused key, a rate limit, an outage)
fails the rows of that request at once, without asking again row by row.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pyembed import errors
from pyembed.ingest import work_items
from pyembed.models import encoder

logger = logging.getLogger(__name__)


def encode(enc: encoder.Encoder, group: list[work_items.Task], outcome: work_items.Outcome) -> None:
    """Chunk and embed one version's tasks; failures are kept per item in ``outcome``."""
    _chunk(enc, group, outcome)
    ready = [t for t in group if t.item not in outcome.failures and t.chunks]
    for part in _requests(enc, ready):
        try:
            _encode_together(enc, part)
        except errors.EndpointError as exc:
            if exc.status in PER_INPUT:
                _encode_alone(enc, part, outcome)
            else:  # the endpoint's trouble, not a text's: row by row would hammer it
                _endpoint_failed(exc, part, outcome)
        except Exception as exc:
            logger.warning("encoding a batch failed (%r); retrying row by row", exc)
            _encode_alone(enc, part, outcome)


def _encode_alone(
    enc: encoder.Encoder, tasks: list[work_items.Task], outcome: work_items.Outcome
) -> None:
    """Find the culprit(s): encode each row alone."""
    for task in tasks:
        try:
            _encode_together(enc, [task])
        except errors.EndpointError as exc:
            _endpoint_failed(exc, [task], outcome)
        except Exception as row_exc:
            outcome.failures[task.item] = f"encoding failed: {row_exc!r}"


def _chunk(enc: encoder.Encoder, group: list[work_items.Task], outcome: work_items.Outcome) -> None:
    by_settings: dict[tuple[int, int], list[work_items.Task]] = defaultdict(list)
    for task in group:
        by_settings[(task.collection.chunk_tokens, task.collection.chunk_overlap)].append(task)
    for (tokens, overlap), tasks in by_settings.items():
        try:
            chunked = enc.chunk_many([t.body or "" for t in tasks], tokens, overlap)
        except Exception:
            chunked = []
            for task in tasks:
                try:
                    chunked.append(enc.chunk_many([task.body or ""], tokens, overlap)[0])
                except Exception as exc:
                    outcome.failures[task.item] = f"chunking failed: {exc!r}"
                    chunked.append([])
        for task, chunks in zip(tasks, chunked, strict=True):
            task.chunks = chunks


def _encode_together(enc: encoder.Encoder, tasks: list[work_items.Task]) -> None:
    texts = [chunk for task in tasks for chunk in task.chunks]
    vectors = enc.encode(texts)
    offset = 0
    for task in tasks:
        task.vectors = vectors[offset : offset + len(task.chunks)]
        offset += len(task.chunks)


# -- write (one short transaction) ---------------------------------------------------


# An endpoint's answers that blame the input (too long, refused content), not the endpoint.
PER_INPUT = frozenset({400, 413, 422})


def _requests(enc: encoder.Encoder, tasks: list[work_items.Task]) -> list[list[work_items.Task]]:
    """A local model encodes the whole batch in one sorted call; an endpoint gets one request's
    worth of rows at a time, so a failed request fails only its rows and none is paid twice."""
    if enc.version.runtime != "endpoint" or not tasks:
        return [tasks] if tasks else []
    size = int((enc.version.endpoint or {}).get("batch_size") or 64)
    parts: list[list[work_items.Task]] = [[]]
    chunks = 0
    for task in tasks:
        if parts[-1] and chunks + len(task.chunks) > size:
            parts.append([])
            chunks = 0
        parts[-1].append(task)
        chunks += len(task.chunks)
    return parts


def _endpoint_failed(
    exc: errors.EndpointError, tasks: list[work_items.Task], outcome: work_items.Outcome
) -> None:
    reason = exc.message + (f"; fix: {exc.hint}" if exc.hint else "")
    logger.warning("%d rows: %s", len(tasks), reason)
    for task in tasks:
        outcome.failures[task.item] = reason
    if exc.retry_after is not None:
        outcome.retry_after = max(outcome.retry_after or 0.0, exc.retry_after)
