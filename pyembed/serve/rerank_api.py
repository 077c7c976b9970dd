"""`POST /v1/rerank`: a registered reranker orders documents for a query, in the request and
response shape of Cohere's and Jina's rerank APIs, so their clients work unchanged.

    {"model": "judge", "query": "...", "documents": ["...", {"text": "..."}], "top_n": 3,
     "return_documents": true}
    -> {"id": "...", "model": "judge", "results": [{"index": 2, "relevance_score": 0.93,
        "document": {"text": "..."}}, ...], "usage": {"total_tokens": 57}}

``model`` is a registered reranker, ``MODEL@N`` or a version id. Results are best first; an
``index`` is the document's position in the request. Scoring runs on the encoder's thread, so
reranking and embedding take turns on the CPU instead of fighting over it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pyembed import errors
from pyembed.db import database
from pyembed.models import registry, rerankers
from pyembed.serve import openai_format

MAX_DOCUMENTS = 1000


class Rerankers:
    """Name resolution (trusted for ``resolve_seconds``: a new version of a reranker takes over
    as the embeddings API's names do) and one loaded reranker per version."""

    def __init__(self, db: database.Database, resolve_seconds: float) -> None:
        self.db = db
        self.resolve_seconds = resolve_seconds
        self._names: dict[str, tuple[float, int]] = {}
        self._loaded: dict[int, rerankers.Reranker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> rerankers.Reranker:
        with self._lock:
            cached = self._names.get(name)
            version = cached[1] if cached and cached[0] > time.monotonic() else None
            if version is not None and version in self._loaded:
                return self._loaded[version]
            with self.db.session() as conn:
                try:
                    version = registry.resolve_version(conn, name)
                except errors.ModelError as exc:
                    raise openai_format.ApiError(
                        404, exc.message, param="model", code="model_not_found"
                    ) from exc
                if version not in self._loaded:
                    try:
                        self._loaded[version] = rerankers.load(conn, version)
                    except errors.WrongModelTask as exc:
                        raise openai_format.ApiError(400, exc.message, param="model") from exc
            self._names[name] = (time.monotonic() + self.resolve_seconds, version)
            return self._loaded[version]


def parse(body: Any) -> tuple[str, str, list[str], int, bool]:
    """(model, query, document texts, top_n, return_documents) of a request, or the 400 that
    names what is wrong."""
    if not isinstance(body, dict):
        raise openai_format.ApiError(400, "the body must be a JSON object")
    name, query, documents = body.get("model"), body.get("query"), body.get("documents")
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name):
        raise openai_format.ApiError(
            400, "'model' is required: a registered reranker", param="model"
        )
    if not isinstance(query, str) or not query.strip():
        raise openai_format.ApiError(400, "'query' must be a non-empty string", param="query")
    if not isinstance(documents, list) or not documents:
        raise openai_format.ApiError(
            400, "'documents' must be a non-empty list of strings", param="documents"
        )
    if len(documents) > MAX_DOCUMENTS:
        raise openai_format.ApiError(
            400,
            f"{len(documents)} documents is more than {MAX_DOCUMENTS} in one request",
            param="documents",
        )
    texts = []
    for i, doc in enumerate(documents):
        text = doc.get("text") if isinstance(doc, dict) else doc
        if not isinstance(text, str):
            raise openai_format.ApiError(
                400,
                f'documents[{i}] is neither a string nor {{"text": string}}',
                param="documents",
            )
        texts.append(text)
    top_n = body.get("top_n", len(texts))
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise openai_format.ApiError(400, "'top_n' must be a positive integer", param="top_n")
    return (
        str(name),
        query,
        texts,
        min(top_n, len(texts)),
        bool(body.get("return_documents", False)),
    )


def add_routes(
    app: FastAPI,
    db: database.Database,
    executor: concurrent.futures.Executor,
    resolve_seconds: float,
) -> None:
    """Serve /v1/rerank on ``app``, scoring on ``executor`` (the encoder's thread)."""
    loaded = Rerankers(db, resolve_seconds)

    @app.post("/v1/rerank")
    async def rerank(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError as exc:
            raise openai_format.ApiError(400, f"the body is not valid JSON: {exc}") from exc
        name, query, texts, top_n, return_documents = parse(body)
        loop = asyncio.get_running_loop()
        reranker = await loop.run_in_executor(None, loaded.get, name)
        scores, tokens = await loop.run_in_executor(executor, _score, reranker, query, texts)
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[:top_n]
        results = [
            {
                "index": i,
                "relevance_score": scores[i],
                **({"document": {"text": texts[i]}} if return_documents else {}),
            }
            for i in order
        ]
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "model": name,
                "results": results,
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            }
        )


def _score(reranker: rerankers.Reranker, query: str, texts: list[str]) -> tuple[list[float], int]:
    scores = [float(s) for s in reranker.score(query, texts)]
    tokenizer = reranker.model.tokenizer
    window = reranker.version.max_seq_length
    tokens = sum(
        len(tokenizer(query, text, truncation=True, max_length=window)["input_ids"])
        for text in texts
    )
    return scores, tokens
