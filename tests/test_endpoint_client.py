"""Embedding through an OpenAI-compatible endpoint: batching, retries that honour Retry-After,
backoff, failures that say why, the API key kept out of messages, and the rate limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest

from pyembed import errors
from pyembed.db import database
from pyembed.models import endpoint_client, rate_limits
from pyembed.serve import http_api
from tests import fake_endpoint
from tests.helpers import embed, run_worker, serving

KEY = "sk-test-secret-123"


def _client(
    url: str, slept: list[float], monkeypatch: pytest.MonkeyPatch, **spec: object
) -> endpoint_client.Client:
    monkeypatch.setenv("FAKE_EMBED_KEY", KEY)
    settings: dict[str, object] = {
        "base_url": url,
        "model": "fake",
        "dimensions": fake_endpoint.DIMS,
        "api_key_env": "FAKE_EMBED_KEY",
        "batch_size": 2,
        "timeout_seconds": 0.3,
        "max_retries": 3,
    }
    settings.update(spec)
    return endpoint_client.Client(
        endpoint_client.EndpointSpec(**settings),  # type: ignore[arg-type]
        sleep=slept.append,
    )


def test_texts_are_batched_in_order_with_the_key_and_dimensions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, slept = fake_endpoint.Endpoint(), []
    with fake_endpoint.running(endpoint) as url:
        client = _client(url, slept, monkeypatch, send_dimensions=True)
        texts = ["stone wall", "harbour", "apple pie", "city block", "river"]
        got = client.embed(texts)
    expected = np.asarray([fake_endpoint.vector(t) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)  # answers come in reverse: sorted back
    assert [len(r["body"]["input"]) for r in endpoint.requests] == [2, 2, 1]
    assert {r["auth"] for r in endpoint.requests} == {f"Bearer {KEY}"}
    assert {r["body"]["dimensions"] for r in endpoint.requests} == {fake_endpoint.DIMS}
    assert "input_type" not in endpoint.requests[0]["body"] and slept == []
    assert client.embed([]).shape == (0, fake_endpoint.DIMS) and len(endpoint.requests) == 3
    # The provider's token counts replace the estimates in the limiter's minute.
    assert client.limiter.sent_in_window() == (3, 15)


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "malformed"])
def test_a_passing_failure_is_retried_after_a_wait(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, slept = fake_endpoint.Endpoint([fault, fault]), []
    with fake_endpoint.running(endpoint) as url:
        got = _client(url, slept, monkeypatch).embed_batch(["stone wall"])
    np.testing.assert_allclose(got[0], fake_endpoint.vector("stone wall"), atol=1e-6)
    assert len(endpoint.requests) == 3 and len(slept) == 2
    if fault == "429":
        assert slept == [1.0, 1.0]  # the provider's Retry-After, not our backoff
    else:
        assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0  # doubling, jittered


def test_retries_end_with_the_providers_message(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, slept = fake_endpoint.Endpoint(["500"] * 10), []
    with fake_endpoint.running(endpoint) as url, pytest.raises(errors.EndpointError) as failed:
        _client(url, slept, monkeypatch).embed_batch(["x"])
    assert failed.value.status == 500 and failed.value.retryable
    assert "injected 500" in str(failed.value) and "after 4 attempts" in str(failed.value)
    assert len(endpoint.requests) == 4 and len(slept) == 3


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("wrong_dims", "vectors of 9 dimensions; the model is registered with 8"),
        ("401", "HTTP 401: Incorrect API key provided: Bearer ***"),
        ("redirect", "HTTP 302"),  # not followed: it could take the key elsewhere
    ],
)
def test_a_failure_that_will_not_pass_is_not_retried(
    fault: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, slept = fake_endpoint.Endpoint([fault]), []
    with fake_endpoint.running(endpoint) as url, pytest.raises(errors.EndpointError) as failed:
        _client(url, slept, monkeypatch).embed_batch(["x"])
    assert words in str(failed.value) and "fix:" in str(failed.value)
    assert KEY not in str(failed.value)
    assert len(endpoint.requests) == 1 and slept == [] and not failed.value.retryable


def test_bad_specs_missing_keys_empty_texts_and_a_long_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(errors.ConfigError, match="not an http"):
        endpoint_client.EndpointSpec(base_url="ftp://x", model="m", dimensions=8)
    with pytest.raises(errors.ConfigError, match="batch_size must be from 1 to 2048"):
        endpoint_client.EndpointSpec(base_url="http://x/v1", model="m", dimensions=8, batch_size=0)
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    spec = endpoint_client.EndpointSpec(
        base_url="http://127.0.0.1:9/v1", model="m", dimensions=8, api_key_env="NO_SUCH_KEY"
    )
    with pytest.raises(errors.ConfigError, match=r"\$NO_SUCH_KEY, which is not set"):
        endpoint_client.Client(spec)
    endpoint, slept = fake_endpoint.Endpoint(["429"]), []
    with fake_endpoint.running(endpoint) as url:
        client = _client(url, slept, monkeypatch, max_wait_seconds=0.5)
        with pytest.raises(errors.EndpointError, match="empty text"):
            client.embed_batch(["ok", ""])
        with pytest.raises(errors.EndpointError, match="asks to wait 1 s") as failed:
            client.embed_batch(["x"])  # longer than allowed: the batch fails, to retry later
    assert failed.value.retryable and slept == []


def test_the_limiter_keeps_requests_and_tokens_within_a_sliding_minute() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = rate_limits.RateLimiter(3, 100, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire(10)
        now[0] += 1
    limiter.acquire(10)  # the fourth request waits for the first to leave the minute
    assert slept == [57.0] and now[0] == 60.0
    limiter.acquire(90)  # 30 tokens in the minute + 90 > 100: waits for two to leave
    assert now[0] == 62.0 and limiter.sent_in_window() == (2, 100)
    limiter.acquire(500)  # larger than the limit: alone in an empty minute, not forever
    assert now[0] == 122.0
    assert rate_limits.retry_after("2.5") == 2.5
    assert rate_limits.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert rate_limits.retry_after("soon") is None and rate_limits.retry_after(None) is None
    # A request counts from when it finished: a slow answer (a provider that saw it late) holds
    # its place in the minute longer, and the order follows those times.
    slow = rate_limits.RateLimiter(2, None, clock=lambda: now[0], sleep=sleep)
    start = now[0]
    first = slow.acquire(1)
    slow.acquire(1)
    now[0] += 5
    slow.finished(first)  # answered 5 s after it was sent, after the second was sent
    slow.acquire(1)  # waits for the second (sent at start) to leave, then the first
    assert now[0] == start + 60
    slow.acquire(1)
    assert now[0] == start + 65


def test_pyembed_serve_is_such_an_endpoint(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    with serving(http_api.create_app(database.Database(db_dsn))) as url:
        spec = endpoint_client.EndpointSpec(
            base_url=f"{url}/v1", model="docs", dimensions=384, send_input_type=True
        )
        got = endpoint_client.Client(spec).embed(["stone walls", "a pie"], input_type="query")
    np.testing.assert_allclose(got, embed(db, "stone walls", "a pie"), atol=1e-5)
