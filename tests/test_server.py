"""The embeddings API: OpenAI's contract (checked with its own client), errors, batching."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import psycopg
import pytest

from pyembed.db import database
from pyembed.serve import batching, http_api
from tests.helpers import embed, run_worker, serving


@pytest.fixture
def api(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> Iterator[str]:
    """The API over a database with collection `docs`, on a free local port."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO docs VALUES (1, 'a stone wall'), (2, 'apple pie')")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    with serving(http_api.create_app(database.Database(db_dsn))) as url:
        yield url


def test_the_openai_client_gets_the_databases_embeddings(db: psycopg.Connection, api: str) -> None:
    client = openai.OpenAI(base_url=f"{api}/v1", api_key="unused")
    texts = ["stone walls", "a pie with apples"]
    for model in ("docs", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2@1", "1"):
        result = client.embeddings.create(model=model, input=texts)  # base64 on the wire
        got = np.array([item.embedding for item in result.data])
        np.testing.assert_allclose(got, embed(db, *texts), atol=1e-5)
        assert [item.index for item in result.data] == [0, 1]
        assert result.usage.prompt_tokens == result.usage.total_tokens > 4
    floats = client.embeddings.create(model="docs", input="stone walls", encoding_format="float")
    assert len(floats.data[0].embedding) == 384
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="no-such-model", input="x")
    listed = {m.id for m in client.models.list()}
    assert {"docs", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2@1"} <= listed


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "docs", "input": []}, "non-empty list"),
        ({"model": "docs", "input": ""}, "input[0] is an empty string"),
        ({"model": "docs", "input": ["ok", 3.5]}, "input[1] is not a string"),
        ({"model": "docs", "input": [101, 2023]}, "token arrays are not supported"),
        ({"model": "docs", "input": [[101, 2023]]}, "token arrays are not supported"),
        ({"model": "docs", "input": ["x"] * 2049}, "the limit is 2048"),
        ({"input": "x"}, "'model' is required"),
        ({"model": "docs", "input": "x", "dimensions": 64}, "not trained to be cut"),
        ({"model": "docs", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "docs", "input": "word " * 300_000}, "reads 256"),
    ],
)
def test_bad_requests_get_openai_errors(api: str, body: dict[str, object], words: str) -> None:
    response = httpx.post(f"{api}/v1/embeddings", json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"


def test_malformed_json_and_truncation_on_request(api: str) -> None:
    bad = httpx.post(
        f"{api}/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    body = {"model": "docs", "input": ["short", "word " * 1000], "truncate": True}
    long = httpx.post(f"{api}/v1/embeddings", timeout=60, json=body)
    assert long.status_code == 200 and long.headers["x-pyembed-truncated"] == "1"
    assert long.json()["usage"]["prompt_tokens"] <= 256 + 10


def test_health_metrics_and_concurrent_clients_batched(api: str) -> None:
    assert httpx.get(f"{api}/health").json() == {"status": "ok"}
    results: list[int] = []

    def client(n: int) -> None:
        for i in range(5):
            body = {"model": "docs", "input": [f"text {n} {i}"] * 3}
            response = httpx.post(f"{api}/v1/embeddings", timeout=60, json=body)
            results.append(response.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 40
    metrics = httpx.get(f"{api}/metrics").text
    assert 'pyembed_requests_total{status="200"} 40.0' in metrics
    assert "pyembed_texts_total 120.0" in metrics
    calls = next(line for line in metrics.splitlines() if line.startswith("pyembed_batches_total"))
    assert float(calls.split()[1]) < 40  # concurrent requests shared model calls


def test_a_batch_waits_only_for_requests_on_their_way() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.arange(len(texts), dtype=np.float32)[:, None]

    async def scenario() -> tuple[float, list[float]]:
        arriving = {"n": 0}
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        batcher = batching.Batcher(encode, executor, max_wait=2.0, arriving=lambda: arriving["n"])
        started = time.monotonic()
        await batcher.embed(["alone"])  # nothing else on its way: no waiting for the window
        alone = time.monotonic() - started
        arriving["n"] = 1  # a request being checked: the batch waits for it

        async def late() -> np.ndarray:
            await asyncio.sleep(0.2)
            arriving["n"] = 0
            return await batcher.embed(["second"])

        first, second = await asyncio.gather(batcher.embed(["first"]), late())
        executor.shutdown()
        return alone, [float(first[0, 0]), float(second[0, 0])]

    alone, rows = asyncio.run(scenario())
    assert alone < 1.0
    assert calls == [["alone"], ["first", "second"]]
    assert rows == [0.0, 1.0]
