"""Client-side limits for a hosted embedding endpoint: requests and tokens per minute, and how
long to wait before asking again (the provider's Retry-After, else exponential backoff).

Limits are kept in a sliding minute, not per calendar minute: a provider counts the last 60
seconds, and a burst at a minute's boundary would otherwise send twice the limit in one second.
"""

from __future__ import annotations

import collections
import email.utils
import math
import random
import threading
import time
from collections.abc import Callable

WINDOW = 60.0


def estimate_tokens(texts: list[str]) -> int:
    """Tokens a request will cost, without the provider's tokenizer: about four UTF-8 bytes a
    token for English under BPE tokenizers, rounded up per text (an estimate for the limiter;
    the answer's ``usage`` replaces it when the endpoint reports one)."""
    return sum(max(1, math.ceil(len(text.encode("utf-8")) / 4)) for text in texts)


class RateLimiter:
    """Blocks until a request of ``tokens`` fits both limits of the last minute (None: no limit).
    Thread-safe: pass one to every Client of the same endpoint and key in a process."""

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._clock, self._sleep = clock, sleep
        # [sent at, tokens]: a list, so the provider's count can replace the estimate in place.
        self._sent: collections.deque[list[float]] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> list[float]:
        """Wait for room, then count the request as sent now; returns its entry for correct()."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now, tokens)
                if wait <= 0:
                    entry = [now, float(tokens)]
                    self._sent.append(entry)
                    return entry
            self._sleep(wait)

    def finished(self, entry: list[float]) -> None:
        """Count the request from when its answer came (or it failed) instead of when it was
        sent: the provider saw it in between, so no 60 s of the provider's arrivals hold more
        than the limit, whatever the latency of each request."""
        with self._lock:
            entry[0] = max(entry[0], self._clock())

    def correct(self, entry: list[float], used: int) -> None:
        """Replace a request's estimated tokens by what the provider counted."""
        with self._lock:
            entry[1] = float(used)

    def sent_in_window(self) -> tuple[int, int]:
        """Requests and tokens counted in the last minute."""
        with self._lock:
            self._expire(self._clock())
            return len(self._sent), int(sum(tokens for _, tokens in self._sent))

    def _expire(self, now: float) -> None:
        # Finishing moves an entry's time: keep them in time order (few are out of place).
        self._sent = collections.deque(sorted(self._sent, key=lambda entry: entry[0]))
        while self._sent and self._sent[0][0] <= now - WINDOW:
            self._sent.popleft()

    def _wait(self, now: float, tokens: int) -> float:
        self._expire(now)
        waits = [0.0]
        if self.rpm is not None and len(self._sent) >= self.rpm:
            waits.append(self._sent[len(self._sent) - self.rpm][0] + WINDOW - now)
        if self.tpm is not None and self._sent:
            # A request larger than the whole limit goes alone into an empty minute.
            excess = sum(t for _, t in self._sent) + min(tokens, self.tpm) - self.tpm
            for when, spent in self._sent:  # oldest first: wait until enough of them expire
                if excess <= 0:
                    break
                excess -= spent
                waits.append(when + WINDOW - now)
        return max(waits)


def retry_after(header: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None when
    absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds before retry ``attempt`` (1-based): doubling from ``base`` up to ``cap``, drawn
    from its upper half so that workers failing together do not come back together."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
