"""A small OpenAI-compatible embeddings endpoint on the loopback interface that fails on cue:
429 with Retry-After, 500, a timeout, malformed JSON, wrong dimensions, a refused key, an input
refused as too long; in order, or a share of requests at random (the fault-run benchmark)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

DIMS = 8


def vector(text: str, dims: int = DIMS) -> list[float]:
    """A deterministic unit vector per text, so a test can tell which text got which."""
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    v = rng.normal(size=dims)
    return [float(x) for x in v / np.linalg.norm(v)]


class Endpoint:
    """What the server does with each request, in order (then 'ok'), and what it saw."""

    def __init__(
        self,
        faults: list[str] | None = None,
        *,
        delay: float = 1.0,
        refuse: str | None = None,
        fault_rate: float = 0.0,
        random_faults: tuple[str, ...] = ("429", "500", "timeout", "malformed"),
        seed: int = 0,
    ) -> None:
        self.faults = list(faults or [])
        self.delay = delay  # how long a 'timeout' request hangs
        self.refuse = refuse  # a request with a text containing this is refused as too long
        self.fault_rate, self.random_faults = fault_rate, random_faults
        self.rng = np.random.default_rng(seed)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_fault(self, body: dict[str, Any], headers: Any) -> str:
        with self.lock:
            if self.faults:
                fault = self.faults.pop(0)
            elif self.refuse and any(self.refuse in text for text in body.get("input", [])):
                fault = "too_long"
            elif self.fault_rate and self.rng.random() < self.fault_rate:
                fault = str(self.rng.choice(list(self.random_faults)))
            else:
                fault = "ok"
            self.requests.append(
                {
                    "at": time.monotonic(),
                    "body": body,
                    "auth": headers.get("Authorization"),
                    "api_key": headers.get("api-key"),
                    "fault": fault,
                }
            )
            return fault


def _handler(endpoint: Endpoint) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # a client that timed out
                pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fault = endpoint.next_fault(body, self.headers)
            error = {"error": {"message": f"injected {fault}", "type": fault}}
            if fault.startswith("429"):  # 429:N asks to wait N seconds
                wait = fault.partition(":")[2] or "1"
                self._send(429, json.dumps(error).encode(), {"Retry-After": wait})
            elif fault == "too_long":
                message = "This model's maximum context length is 8192 tokens"
                self._send(400, json.dumps({"error": {"message": message}}).encode())
            elif fault == "redirect":
                self._send(302, b"{}", {"Location": "http://127.0.0.2:9/v1/embeddings"})
            elif fault == "500":
                self._send(500, json.dumps(error).encode())
            elif fault == "401":
                message = f"Incorrect API key provided: {self.headers.get('Authorization', '')}"
                self._send(401, json.dumps({"error": {"message": message}}).encode())
            elif fault == "timeout":
                time.sleep(endpoint.delay)
                self._send(200, b"{}")
            elif fault == "malformed":
                self._send(200, b'{"data": [{"embedding": [0.1, ')
            else:
                dims = DIMS + 1 if fault == "wrong_dims" else body.get("dimensions", DIMS)
                texts = body["input"]
                data = [
                    {"object": "embedding", "index": i, "embedding": vector(t, dims)}
                    for i, t in enumerate(texts)
                ]
                answer = {"data": data[::-1], "usage": {"total_tokens": 3 * len(texts)}}
                self._send(200, json.dumps(answer).encode())

    return Handler


@contextlib.contextmanager
def running(endpoint: Endpoint) -> Iterator[str]:
    """The endpoint on 127.0.0.1 for the block; yields its base URL (up to /v1)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
