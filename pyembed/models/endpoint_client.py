"""Embedding through an OpenAI-compatible HTTP endpoint (OpenAI, Azure, Ollama, vLLM, Text
Embeddings Inference, LiteLLM, or ``pyembed serve``): batched, rate-limited, retried.

A batch is retried with backoff on what may pass later (429, 5xx, timeouts, a lost connection,
an unreadable answer), waiting what the provider's Retry-After says when it says it; what will
not pass (a refused key, an unknown model, vectors of the wrong size) fails at once with the
provider's own message. The API key is read from an environment variable named in the spec,
never stored, and masked in every message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np

from pyembed import errors
from pyembed.models import rate_limits

logger = logging.getLogger(__name__)

_KEY_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]{0,100}_(API_KEY|KEY|TOKEN)")
RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """Where and how to ask for embeddings; what a registered endpoint model stores."""

    base_url: str  # up to the API version: https://api.openai.com/v1
    model: str
    dimensions: int
    send_dimensions: bool = False  # the request's "dimensions" (shortened vectors)
    api_key_env: str | None = None
    batch_size: int = 64
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 5
    max_wait_seconds: float = 300.0  # a longer Retry-After fails the batch, to be retried later
    send_input_type: bool = False  # "input_type": query|document (pyembed serve)
    key_header: str = "Authorization"  # "Bearer KEY"; any other header carries the key alone

    def __post_init__(self) -> None:
        url = urllib.parse.urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise errors.ConfigError(
                f"endpoint base URL {self.base_url!r} is not an http(s) URL",
                hint="give the URL up to the API version, e.g. https://api.openai.com/v1",
            )
        checks = [
            (self.dimensions >= 1, "dimensions must be at least 1"),
            (1 <= self.batch_size <= 2048, "batch_size must be from 1 to 2048"),
            (self.timeout_seconds > 0, "timeout_seconds must be positive"),
            (self.max_retries >= 0, "max_retries must not be negative"),
            ((self.requests_per_minute or 1) >= 1, "requests_per_minute must be at least 1"),
            ((self.tokens_per_minute or 1) >= 1, "tokens_per_minute must be at least 1"),
            (
                self.api_key_env is None or _KEY_VARIABLE.fullmatch(self.api_key_env) is not None,
                f"api_key_env {self.api_key_env!r} does not name a key: use a variable ending "
                "in _API_KEY, _KEY or _TOKEN (a writer registers models, and must not have the "
                "worker send its database password or other secrets anywhere)",
            ),
            (
                re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.key_header) is not None,
                "key_header must be a header name (Authorization, api-key)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise errors.ConfigError(f"endpoint {self.model!r}: {message}")


Opener = Callable[..., Any]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would carry the key to a server nobody allowed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPEN = urllib.request.build_opener(_NoRedirects()).open


class Client:
    """Embeds texts through one endpoint; share one per process (its limiter counts for all)."""

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        limiter: rate_limits.RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        opener: Opener = _OPEN,
    ) -> None:
        self.spec = spec
        self.limiter = limiter or rate_limits.RateLimiter(
            spec.requests_per_minute, spec.tokens_per_minute
        )
        self._sleep, self._open = sleep, opener
        self._key = self._api_key()

    def _api_key(self) -> str | None:
        name = self.spec.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise errors.ConfigError(
                f"endpoint model {self.spec.model!r} reads its API key from ${name}, which is "
                "not set here",
                hint=f"export {name}=... in the environment of the worker and of anything that "
                "embeds queries",
            )
        return key

    def embed(self, texts: list[str], input_type: str = "document") -> np.ndarray:
        """Vectors of ``texts`` in order, ``batch_size`` texts a request."""
        if not texts:
            return np.zeros((0, self.spec.dimensions), dtype=np.float32)
        return np.vstack(
            [
                self.embed_batch(texts[i : i + self.spec.batch_size], input_type)
                for i in range(0, len(texts), self.spec.batch_size)
            ]
        )

    def embed_batch(self, texts: list[str], input_type: str = "document") -> np.ndarray:
        """One request's vectors, retried while retrying can help; EndpointError otherwise."""
        if not texts or any(not text for text in texts):
            raise errors.EndpointError(
                "an empty batch or an empty text cannot be embedded by an endpoint",
                hint="leave empty rows out (the worker does) or give them text",
            )
        tokens = rate_limits.estimate_tokens(texts)
        attempt = 0
        while True:
            attempt += 1
            entry = self.limiter.acquire(tokens)
            try:
                vectors, used = self._request(texts, input_type)
            except errors.EndpointError as exc:
                self.limiter.finished(entry)
                wait = self._wait_before_retry(exc, attempt)
                if wait is None:
                    raise
                logger.warning(
                    "endpoint %s: %s; retry %d in %.1f s",
                    self.spec.model,
                    exc.message,
                    attempt,
                    wait,
                )
                self._sleep(wait)
                continue
            self.limiter.finished(entry)
            if used is not None:
                self.limiter.correct(entry, used)
            return vectors

    def _wait_before_retry(self, exc: errors.EndpointError, attempt: int) -> float | None:
        if not exc.retryable or attempt > self.spec.max_retries:
            if exc.retryable:
                exc.message += f" (after {attempt} attempts)"
            return None
        asked = exc.retry_after
        if asked is not None and asked > self.spec.max_wait_seconds:
            exc.message += f" (the endpoint asks to wait {asked:.0f} s)"
            return None
        return asked if asked is not None else rate_limits.backoff(attempt)

    def _request(self, texts: list[str], input_type: str) -> tuple[np.ndarray, int | None]:
        body: dict[str, Any] = {
            "model": self.spec.model,
            "input": texts,
            "encoding_format": "float",
        }
        if self.spec.send_dimensions:
            body["dimensions"] = self.spec.dimensions
        if self.spec.send_input_type:
            body["input_type"] = input_type
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            bearer = self.spec.key_header.lower() == "authorization"
            headers[self.spec.key_header] = f"Bearer {self._key}" if bearer else self._key
        request = urllib.request.Request(
            self.spec.base_url.rstrip("/") + "/embeddings",
            data=json.dumps(body).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        try:
            with self._open(request, timeout=self.spec.timeout_seconds) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._refused(exc) from None
        except TimeoutError:
            raise self._failed(f"no answer within {self.spec.timeout_seconds:g} s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self._failed(f"cannot reach {self.spec.base_url}: {reason}") from None
        return self._vectors(raw, len(texts))

    def _failed(self, what: str) -> errors.EndpointError:
        return errors.EndpointError(f"endpoint {self.spec.model!r}: {what}", retryable=True)

    def _refused(self, exc: urllib.error.HTTPError) -> errors.EndpointError:
        text = exc.read().decode("utf-8", "replace")[:2000]
        message = _provider_message(text)
        return errors.EndpointError(
            self._mask(f"endpoint {self.spec.model!r} answered HTTP {exc.code}: {message}"),
            status=exc.code,
            retryable=exc.code in RETRYABLE,
            hint=_HINTS.get(exc.code),
            retry_after=rate_limits.retry_after(exc.headers.get("Retry-After")),
        )

    def _vectors(self, raw: bytes, expected: int) -> tuple[np.ndarray, int | None]:
        try:
            answer = json.loads(raw)
            items = sorted(answer["data"], key=lambda item: item.get("index", 0))
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            shown = raw[:200].decode("utf-8", "replace")
            raise errors.EndpointError(
                f"endpoint {self.spec.model!r} answered what is not an embeddings response "
                f"({type(exc).__name__}: {exc}): {shown!r}",
                retryable=True,
            ) from None
        if vectors.ndim != 2 or len(vectors) != expected:
            raise errors.EndpointError(
                f"endpoint {self.spec.model!r} answered {len(vectors)} vectors for {expected} "
                "texts",
                hint="check that base_url points at an OpenAI-compatible /embeddings API",
            )
        if vectors.shape[1] != self.spec.dimensions:
            raise errors.EndpointError(
                f"endpoint {self.spec.model!r} answered vectors of {vectors.shape[1]} "
                f"dimensions; the model is registered with {self.spec.dimensions}",
                hint="register it with the endpoint's dimensions, or with send_dimensions so "
                "the endpoint shortens its vectors (where it supports that)",
            )
        if not np.isfinite(vectors).all():
            raise errors.EndpointError(
                f"endpoint {self.spec.model!r} answered vectors with NaN or infinite values",
                retryable=True,
            )
        usage = answer.get("usage") if isinstance(answer, dict) else None
        used = usage.get("total_tokens") if isinstance(usage, dict) else None
        return vectors, int(used) if isinstance(used, int) else None

    def _mask(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


_HINTS = {
    401: "check the API key in the environment variable the model names",
    403: "the key may not use this model; check its project and permissions",
    404: "check base_url (up to the API version, e.g. .../v1) and the model name",
    429: "lower requests_per_minute / tokens_per_minute to the provider's limits",
    **dict.fromkeys(
        (301, 302, 303, 307, 308),
        "the endpoint redirects: register the URL it redirects to (pyembed follows no "
        "redirect, which could carry the key to another server)",
    ),
}


def _provider_message(text: str) -> str:
    """The provider's own words: OpenAI's error.message, FastAPI's detail, else the body."""
    try:
        found = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(found, dict):
        error = found.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("detail", "message", "error"):
            if found.get(key):
                return str(found[key])[:500]
    return text.strip()[:500]
