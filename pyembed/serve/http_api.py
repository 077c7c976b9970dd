"""`pyembed serve`: an OpenAI-compatible embeddings API for every registered model version
(and /v1/rerank for the registered rerankers: rerank_api).

``model`` names a registered model (its newest ready version), ``MODEL@N``, a version id, or a
collection (its active version), so an app embeds queries with exactly what the database
embedded its rows with. Concurrent requests are batched (pyembed.serve.batching). Inputs longer than
the model's window are refused unless the caller asks for truncation (``"truncate": true``),
never cut silently. Errors use OpenAI's JSON shape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import sys
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from pyembed import errors
from pyembed.db import database, queries
from pyembed.models import encoder, loading
from pyembed.serve import batching, openai_format, rerank_api

logger = logging.getLogger(__name__)

RESOLVE_SECONDS = 10.0  # how long a name -> version lookup is trusted (promotions move it)
# Texts per forward pass: a batch of requests is sorted by length and cut into passes this
# small, so texts of unlike lengths are not padded to the longest of the whole batch.
SUB_BATCH = 16


class Models:
    """Name resolution (cached briefly) and one loaded encoder and batcher per version."""

    def __init__(
        self, db: database.Database, executor: concurrent.futures.Executor, on_batch: Any = None
    ) -> None:
        self.db = db
        self.executor = executor
        # Endpoint versions wait on the network, not the CPU: they must not queue behind (or
        # hold up) the local model's thread, and a server may be its own endpoint's provider.
        self.io_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="endpoint"
        )
        self.on_batch = on_batch
        self._names: dict[str, tuple[float, int]] = {}
        self._encoders: dict[int, encoder.Encoder] = {}
        self.tokenizers: dict[int, Any] = {}  # a copy per version, for the length checks
        self._batchers: dict[tuple[int, str], batching.Batcher] = {}
        self._lock = threading.Lock()
        self.arriving = 0  # requests between arrival and their batcher (event loop only)

    def cached(self, name: str) -> encoder.Encoder | None:
        """The loaded encoder ``name`` resolves to, if both are cached: no thread hop needed."""
        hit = self._names.get(name)
        if hit and hit[0] > time.monotonic():
            return self._encoders.get(hit[1])
        return None

    def resolve(self, name: str) -> int:
        cached = self._names.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        with self.db.session() as conn:
            row = conn.execute(queries.get("embedding_version"), {"name": name}).fetchone()
        if row is None or row[0] is None:
            raise openai_format.ApiError(
                404,
                f"the model {name!r} does not exist: pass a registered "
                "model, MODEL@N, a version id or a collection name",
                param="model",
                code="model_not_found",
            )
        version = int(row[0])
        self._names[name] = (time.monotonic() + RESOLVE_SECONDS, version)
        return version

    def encoder(self, version: int) -> encoder.Encoder:
        with self._lock:
            if version not in self._encoders:
                with self.db.session() as conn:
                    try:
                        loaded = loading.load(conn, version)
                    except errors.WrongModelTask as exc:
                        raise openai_format.ApiError(400, exc.message, param="model") from exc
                    except errors.ConfigError as exc:  # an endpoint's key or server not set up
                        raise openai_format.ApiError(503, str(exc), param="model") from exc
                    enc = encoder.Encoder(loaded, batch_size=SUB_BATCH)
                self.tokenizers[version] = copy.deepcopy(enc.tokenizer)
                self._encoders[version] = enc
            return self._encoders[version]

    def batcher(self, version: int, input_type: str) -> batching.Batcher:
        key = (version, input_type)
        if key not in self._batchers:
            enc = self._encoders[version]
            encode = enc.encode_queries if input_type == "query" else enc.encode
            runs_on = self.io_executor if enc.version.runtime == "endpoint" else self.executor
            self._batchers[key] = batching.Batcher(
                encode, runs_on, on_batch=self.on_batch, arriving=lambda: self.arriving
            )
        return self._batchers[key]

    def listing(self) -> list[dict[str, Any]]:
        with self.db.session() as conn:
            rows = conn.execute(queries.get("served_models")).fetchall()
        return [
            {
                "id": name,
                "object": "model",
                "created": int(created.timestamp()),
                "owned_by": "pyembed",
            }
            for name, created in rows
        ]


def create_app(db: database.Database) -> FastAPI:
    """The API over the database at ``dsn``."""
    app = FastAPI(title="pyembed embeddings", docs_url=None, redoc_url=None)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
    # Length checks tokenize on their own thread, so requests reach the batcher while the model
    # is busy instead of queueing behind its batch.
    checker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="check")
    metrics = CollectorRegistry()
    batches = Counter("pyembed_batches", "Model calls (batches of requests)", registry=metrics)
    batched = Histogram(
        "pyembed_batch_requests",
        "Requests per model call",
        registry=metrics,
        buckets=(1, 2, 4, 8, 16, 32, 64),
    )

    def on_batch(requests_in_batch: int, texts: int) -> None:
        batches.inc()
        batched.observe(requests_in_batch)

    models = Models(db, executor, on_batch)
    requests = Counter("pyembed_requests", "Embedding requests", ["status"], registry=metrics)
    texts_total = Counter("pyembed_texts", "Texts embedded", registry=metrics)
    latency = Histogram("pyembed_request_seconds", "Request latency", registry=metrics)

    @app.exception_handler(openai_format.ApiError)
    async def api_error(request: Request, exc: openai_format.ApiError) -> JSONResponse:
        requests.labels(status=str(exc.status)).inc()
        return exc.response()

    @app.exception_handler(errors.PyembedError)
    async def pyembed_error(request: Request, exc: errors.PyembedError) -> JSONResponse:
        requests.labels(status="500").inc()
        return openai_format.ApiError(500, str(exc), kind="server_error").response()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await request.json()
        except ValueError as exc:
            raise openai_format.ApiError(400, f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise openai_format.ApiError(400, "the body must be a JSON object")
        texts = openai_format.inputs(body)
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise openai_format.ApiError(
                400, "'model' is required: a registered model or a collection", param="model"
            )
        input_type = body.get("input_type", "query")
        if input_type not in ("query", "document"):
            raise openai_format.ApiError(
                400, "input_type is 'query' or 'document'", param="input_type"
            )
        loop = asyncio.get_running_loop()
        models.arriving += 1
        try:
            # Database look-ups and model loading run on threads; a warm name costs neither.
            enc = models.cached(name)
            if enc is None:
                version = await loop.run_in_executor(None, models.resolve, name)
                enc = await loop.run_in_executor(None, models.encoder, version)
            version = enc.version.id
            # A tokenizer is not safe to share between threads: the check has its own copy.
            tokens, truncated = await loop.run_in_executor(
                checker,
                openai_format.check_length,
                enc,
                models.tokenizers[version],
                texts,
                bool(body.get("truncate", False)),
            )
            batcher = models.batcher(version, input_type)
        finally:
            models.arriving -= 1
        try:
            vectors = await batcher.embed(texts)
        except errors.EndpointError as exc:  # the provider behind an endpoint version
            raise openai_format.ApiError(503 if exc.retryable else 502, str(exc)) from exc
        matryoshka = enc.version.produced_by.get("loss") == "matryoshka"
        vectors = openai_format.shape(vectors, body.get("dimensions"), enc, matryoshka)
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise openai_format.ApiError(
                400, "encoding_format is 'float' or 'base64'", param="encoding_format"
            )
        data = [
            {"object": "embedding", "index": i, "embedding": openai_format.encoded(v, encoding)}
            for i, v in enumerate(vectors)
        ]
        requests.labels(status="200").inc()
        texts_total.inc(len(texts))
        latency.observe(time.perf_counter() - started)
        headers = {"x-pyembed-truncated": ",".join(map(str, truncated))} if truncated else None
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=headers,
        )

    rerank_api.add_routes(app, db, executor, RESOLVE_SECONDS)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        listing = await asyncio.get_running_loop().run_in_executor(None, models.listing)
        return {"object": "list", "data": listing}

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            await asyncio.get_running_loop().run_in_executor(None, models.listing)
        except errors.PyembedError as exc:
            return JSONResponse(status_code=503, content={"status": "down", "error": str(exc)})
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(
    db: database.Database, host: str = "127.0.0.1", port: int = 8001, *, access_log: bool = False
) -> None:
    """Run the API until interrupted (one log line per request only with ``access_log``)."""
    import uvicorn

    # The encode thread holds the GIL between model calls (tokenizing, numpy); at the default
    # 5 ms switch interval the event loop waits that long to answer or accept a request while
    # the model could already run the next batch.
    sys.setswitchinterval(0.0005)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    uvicorn.run(create_app(db), host=host, port=port, log_level=level, access_log=access_log)
