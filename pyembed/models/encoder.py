"""Turning texts into chunks and chunks into vectors for one model version.

Chunks are cut by the model's own tokenizer at word boundaries, so each fits the model's window
with its document prefix and special tokens: nothing is silently truncated at max_seq_length.
All chunks of a claimed batch are encoded in one call, which sorts them by length before
batching; that is what keeps padding waste, and so the cost per row, low.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from pyembed.models import loading, runtimes

logger = logging.getLogger(__name__)


class Encoder:
    """Chunking and encoding with one loaded model version."""

    def __init__(self, loaded: loading.LoadedModel, *, batch_size: int = 64) -> None:
        self.version = loaded.version
        self.model = loaded.model
        self.tokenizer: Any = loaded.model.tokenizer
        self.batch_size = batch_size
        prefix = self.version.document_prefix
        self._prefix_tokens = len(self._tokens(prefix)) if prefix else 0
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        max_seq_length = self.model.max_seq_length or self.version.max_seq_length
        self.max_window = int(max_seq_length) - int(special) - self._prefix_tokens
        if self.max_window < 8:
            raise ValueError(f"model {self.version.label}: its document prefix leaves no room")

    def _tokens(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def window(self, chunk_tokens: int) -> int:
        """The tokens per chunk: the collection's setting, capped by the model's window."""
        return max(1, min(chunk_tokens, self.max_window))

    def content_hash(self, body: str | None, chunk_tokens: int, overlap: int) -> bytes:
        """Identifies what a row's chunks were made from: text, prefix and chunk settings."""
        settings = f"{self.window(chunk_tokens)}:{overlap}\x00{self.version.document_prefix}\x00"
        return hashlib.sha256((settings + (body or "")).encode("utf-8")).digest()

    def chunk_many(self, bodies: list[str], chunk_tokens: int, overlap: int) -> list[list[str]]:
        """Split each text into chunks of at most the window's tokens (one tokenizer call)."""
        window = self.window(chunk_tokens)
        overlap = min(overlap, window - 1)
        result: list[list[str]] = [[body] if body.strip() else [] for body in bodies]
        # A token covers at least one UTF-8 byte (one more for a leading-space marker), so a text
        # this short fits without tokenizing it here; the model tokenizes it once, when encoding.
        long = [i for i, body in enumerate(bodies) if len(body.encode("utf-8")) >= window]
        if not long:
            return result
        encodings = self.tokenizer(
            [bodies[i] for i in long],
            add_special_tokens=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        for position, index in enumerate(long):
            offsets = encodings["offset_mapping"][position]
            if len(offsets) > window:
                result[index] = self._split(
                    bodies[index], offsets, encodings.word_ids(position), window, overlap
                )
        return result

    def _split(
        self,
        body: str,
        offsets: list[tuple[int, int]],
        word_ids: list[int | None],
        window: int,
        overlap: int,
    ) -> list[str]:
        n = len(offsets)

        def word_start(i: int) -> bool:
            return i == 0 or i >= n or word_ids[i] != word_ids[i - 1]

        spans: list[tuple[int, int]] = []
        start = 0
        while start < n:
            end = min(start + window, n)
            # End on a word boundary unless a single word is longer than the window.
            while end < n and end > start + 1 and not word_start(end):
                end -= 1
            if end == start + 1 and not word_start(end):
                end = min(start + window, n)
            spans.append((start, end))
            if end >= n:
                break
            next_start = max(end - overlap, start + 1)
            while next_start < end and not word_start(next_start):
                next_start += 1
            start = next_start
        texts = [body[offsets[s][0] : offsets[e - 1][1]] for s, e in spans]
        # Re-tokenizing a cut text can differ by a piece: check all at once, shrink the few over.
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        for i, ((s, e), length) in enumerate(zip(spans, lengths, strict=True)):
            while length > window and e - s > 1:
                e -= 1
                texts[i] = body[offsets[s][0] : offsets[e - 1][1]]
                length = len(self._tokens(texts[i]))
        return [text for text in texts if text.strip()]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed document chunks (with the model's document prefix) in one sorted call."""
        return self._encode(texts, self.version.document_prefix, "document")

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed search queries (with the model's query prefix), as apps should embed them."""
        return self._encode(texts, self.version.query_prefix, "query")

    def _encode(self, texts: list[str], prefix: str, input_type: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.version.dimensions), dtype=np.float32)
        return runtimes.encode(
            self.model,
            texts,
            prompt=prefix or None,
            input_type=input_type,
            batch_size=self.batch_size,
        )
