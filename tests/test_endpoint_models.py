"""Endpoint models in the registry: registered with no key and only at servers the admin allows,
refused when their settings are changed, embedded by the worker (chunked, rate-limited) with the
provider's failures in failed_items, and asked for query embeddings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from psycopg import sql

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.ingest import dead_letters
from pyembed.models import endpoint_client, endpoint_registry, loading
from tests import fake_endpoint
from tests.helpers import embed, run_worker

KEY = "sk-test-secret-123"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, clean_cache: Path) -> Iterator[fake_endpoint.Endpoint]:
    """A fake endpoint on 127.0.0.1 (its URL as ``.url``) and its key in the environment."""
    monkeypatch.setenv("FAKE_EMBED_KEY", KEY)
    endpoint = fake_endpoint.Endpoint()
    with fake_endpoint.running(endpoint) as url:
        endpoint.url = url  # type: ignore[attr-defined]
        yield endpoint


def spec(url: str, **settings: object) -> endpoint_client.EndpointSpec:
    values: dict[str, object] = {
        "base_url": url,
        "model": "fake",
        "dimensions": fake_endpoint.DIMS,
        "api_key_env": "FAKE_EMBED_KEY",
        "batch_size": 4,
        "timeout_seconds": 0.5,
        "max_retries": 1,
    }
    values.update(settings)
    return endpoint_client.EndpointSpec(**values)  # type: ignore[arg-type]


def register(db_dsn: str, url: str, name: str = "hosted", **settings: object) -> int:
    db = database.Database(db_dsn)
    endpoint_registry.allow_origins(db, [url])
    return endpoint_registry.register_endpoint(db, name, spec(url, **settings)).id


def test_registration_keeps_no_key_and_only_allowed_servers(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    url: str = fake.url  # type: ignore[attr-defined]
    with pytest.raises(errors.ConfigError, match="endpoint_origins") as refused:
        endpoint_registry.register_endpoint(database.Database(db_dsn), "hosted", spec(url))
    assert (
        refused.value.hint == f"as the database owner: `pyembed models allow-endpoint {url[:-3]}`"
    )
    assert fake.requests == []  # nothing was sent, key or not
    version = register(db_dsn, url)
    # Registration asked once, to find a wrong URL, key or dimension now rather than in the queue.
    assert [r["body"]["input"] for r in fake.requests] == [[endpoint_registry.PROBE]]
    row = db.execute(
        "SELECT v.runtime, v.artifact_source, v.status, v.endpoint->>'api_key_env', "
        "m.dimensions, m.max_seq_length, v::text FROM pyembed.model_versions v "
        "JOIN pyembed.models m ON m.id = v.model_id WHERE v.id = %s",
        (version,),
    ).fetchone()
    assert row is not None and row[:6] == (
        "endpoint",
        "endpoint",
        "ready",
        "FAKE_EMBED_KEY",
        8,
        8191,
    )
    assert KEY not in row[6]
    for bad, why in [
        ("http://user:pw@127.0.0.1:9/v1", "user:password"),
        ("https://example.com/v1?api-key=abc", "api-key"),
    ]:
        with pytest.raises(errors.ConfigError, match=why):
            endpoint_registry.register_endpoint(database.Database(db_dsn), "x", spec(bad))
    # A key in the settings column is refused by the table itself, whoever writes it.
    with pytest.raises(psycopg.errors.CheckViolation, match="model_versions_endpoint_shape"):
        db.execute(
            'UPDATE pyembed.model_versions SET endpoint = endpoint || \'{"api_key": "sk"}\' '
            "WHERE id = %s",
            (version,),
        )


def test_changed_settings_are_refused_and_limits_tuned_in_place(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    url: str = fake.url  # type: ignore[attr-defined]
    version = register(db_dsn, url)
    # Limits are tuned in place (and checked when loaded)...
    db.execute(
        "UPDATE pyembed.model_versions SET endpoint = endpoint || '{\"requests_per_minute\": 90}' "
        "WHERE id = %s",
        (version,),
    )
    loaded = loading.load(db, version)
    assert loaded.model.client.limiter.rpm == 90  # type: ignore[attr-defined]
    loading._models.clear()
    # ... but what decides its vectors and where its key goes never changes, for anyone.
    change = "UPDATE pyembed.model_versions SET endpoint = endpoint || %s::jsonb WHERE id = %s"
    for changed in ['{"base_url": "http://127.0.0.1:1/v1"}', '{"api_key_env": "DB_API_KEY"}']:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot change"):
            db.execute(change, (changed, version))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot change"):
        db.execute(
            "UPDATE pyembed.model_versions SET artifact_sha256 = repeat('0', 64) WHERE id = %s",
            (version,),
        )
    # And a load checks the hash too (a table owner may switch the trigger off).
    db.execute("ALTER TABLE pyembed.model_versions DISABLE TRIGGER model_versions_endpoint_fixed")
    db.execute(change, ('{"model": "other"}', version))
    db.execute("ALTER TABLE pyembed.model_versions ENABLE TRIGGER model_versions_endpoint_fixed")
    with pytest.raises(errors.ModelError, match="changed after it was registered"):
        loading.load(db, version)
    with pytest.raises(errors.ConfigError, match="does not name a key"):
        spec(url, api_key_env="PGPASSWORD")
    # A server the admin takes off the list gets no key from a process that loads afresh.
    allowed = register(db_dsn, url, name="hosted-2")
    endpoint_registry.allow_origins(database.Database(db_dsn), [], [url])
    with pytest.raises(errors.ConfigError, match="not in the admin's list"):
        loading.load(db, allowed)
    with pytest.raises(errors.ModelError, match="no files to export"):
        loading.materialize(db, loading.fetch_version(db, version))


def test_the_worker_embeds_a_collection_through_the_endpoint(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    version = register(db_dsn, fake.url, send_input_type=True)  # type: ignore[attr-defined]
    long_text = " ".join(f"word{i}" for i in range(60))  # 60 words of 5-6 characters
    rows = [(1, "stone walls"), (2, None), (3, ""), (4, long_text), (5, "harbour ships")]
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.cursor().executemany("INSERT INTO docs VALUES (%s, %s)", rows)
    db.execute(
        "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], model => 'hosted', "
        "chunk_tokens => 32, chunk_overlap => 4)"
    )
    stats = run_worker(db_dsn)
    assert stats.failures == 0, stats.last_error
    register_vector(db)
    stored = db.execute(
        sql.SQL(
            "SELECT id, chunk_seq, chunk, embedding FROM {} "
            "WHERE embedding IS NOT NULL ORDER BY id, chunk_seq"
        ).format(sql.Identifier("pyembed_store", f"docs_v{version}"))
    ).fetchall()
    for _, _, chunk, vector in stored:
        np.testing.assert_allclose(vector.to_numpy(), fake_endpoint.vector(chunk), atol=1e-6)
    chunks = [chunk for pk, _, chunk, _ in stored if pk == 4]
    # 32 stand-in tokens of at most 4 characters, 2 a word here: 16 words a chunk, 4 overlapping.
    assert len(chunks) == 5 and all(len(c.split()) <= 16 for c in chunks)
    assert chunks[0].split()[-2:] == chunks[1].split()[:2]
    documents = [r for r in fake.requests if r["body"]["input"] != [endpoint_registry.PROBE]]
    assert {r["body"]["input_type"] for r in documents} == {"document"}
    assert max(len(r["body"]["input"]) for r in documents) <= 4  # the spec's batch size
    # Queries are embedded as queries and find their rows.
    vector = embed(db, "stone walls", version=version)[0]
    assert fake.requests[-1]["body"]["input_type"] == "query"
    found = db.execute("SELECT pk FROM pyembed.search('docs', %s, 1)", (vector,)).fetchall()
    assert found == [([1],)]


def test_endpoint_failures_end_in_failed_items_with_the_providers_words(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    register(db_dsn, fake.url)  # type: ignore[attr-defined]
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.cursor().executemany(
        "INSERT INTO docs VALUES (%s, %s)",
        [(1, "fine"), (2, "REFUSE me, I am too long"), (3, "also fine")],
    )
    fake.refuse = "REFUSE"
    fake.faults = ["401"]  # the first batch: a refused key, for every row of it
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], model => 'hosted')")
    run_worker(db_dsn, max_attempts=1)
    failed = dict(
        db.execute("SELECT pk->>0, last_error FROM pyembed.failed_items ORDER BY 1").fetchall()
    )
    assert set(failed) == {"1", "2", "3"}
    assert "answered HTTP 401: Incorrect API key provided: Bearer ***" in failed["1"]
    assert "fix: check the API key" in failed["1"] and KEY not in failed["1"]
    requests = len(fake.requests)
    assert requests == 2  # the probe and one batch: a refused key is not asked row by row
    # Retried: the rows that can be embedded are; the input the endpoint refuses fails alone,
    # with the provider's words, after one batch request and one per row.
    assert dead_letters.retry_failed(database.Database(db_dsn), "docs") == 3
    run_worker(db_dsn, max_attempts=1)
    failed = dict(db.execute("SELECT pk->>0, last_error FROM pyembed.failed_items").fetchall())
    assert set(failed) == {"2"} and "maximum context length is 8192 tokens" in failed["2"]
    assert len(fake.requests) == requests + 1 + 3
    # A long Retry-After defers the rows (no worker waits it out, none asks in a loop).
    db.execute("INSERT INTO docs VALUES (4, 'later')")
    fake.faults = ["429:600"]
    run_worker(db_dsn)
    due = db.execute(
        "SELECT next_attempt_at - clock_timestamp(), last_error FROM pyembed.queue"
    ).fetchone()
    assert due is not None and due[0] > dt.timedelta(seconds=590)
    assert "asks to wait 600 s" in due[1]
    assert len(fake.requests) == requests + 4 + 1


def test_a_failed_request_fails_only_its_rows_and_none_is_paid_for_twice(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    version = register(db_dsn, fake.url)  # type: ignore[attr-defined]
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.cursor().executemany(
        "INSERT INTO docs VALUES (%s, %s)", [(i, f"row {i}") for i in range(12)]
    )
    fake.faults = ["ok", "wrong_dims"]  # the second request of the batch answers 9-d vectors
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], model => 'hosted')")
    first = run_worker(db_dsn, backoff_seconds=60)
    assert first.failures == 4  # that request's rows, not the batch's twelve
    error = db.execute("SELECT DISTINCT last_error FROM pyembed.queue").fetchall()
    assert len(error) == 1 and "answered vectors of 9 dimensions" in error[0][0]
    db.execute("UPDATE pyembed.queue SET next_attempt_at = now()")
    run_worker(db_dsn)
    embedded = db.execute(
        sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier("pyembed_store", f"docs_v{version}")
        )
    ).fetchone()
    assert embedded == (12,)
    paid = [t for r in fake.requests if r["fault"] == "ok" for t in r["body"]["input"]]
    assert sorted(paid) == sorted([endpoint_registry.PROBE] + [f"row {i}" for i in range(12)])


def test_the_cli_allows_a_server_and_registers_an_azure_style_endpoint(
    db: psycopg.Connection, db_dsn: str, fake: fake_endpoint.Endpoint
) -> None:
    url: str = fake.url  # type: ignore[attr-defined]
    runner = CliRunner()
    args = ["models", "register-endpoint", "azure", "--dsn", db_dsn, "--base-url", url]
    args += ["--model", "my-deployment", "--dimensions", "8", "--api-key-env", "FAKE_EMBED_KEY"]
    args += ["--key-header", "api-key", "--requests-per-minute", "60"]
    refused = runner.invoke(main, args)
    assert refused.exit_code == 2 and "pyembed models allow-endpoint" in refused.output
    allowed = runner.invoke(main, ["models", "allow-endpoint", url, "--dsn", db_dsn])
    assert allowed.exit_code == 0 and url[:-3] in allowed.output
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert fake.requests[-1]["api_key"] == KEY and fake.requests[-1]["auth"] is None
    stored = db.execute(
        "SELECT endpoint->>'key_header', endpoint->>'requests_per_minute' "
        "FROM pyembed.model_versions WHERE runtime = 'endpoint'"
    ).fetchone()
    assert stored == ("api-key", "60")
    listed = runner.invoke(main, ["models", "allow-endpoint", "--dsn", db_dsn])
    assert url[:-3] in listed.output
