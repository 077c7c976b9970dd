"""OpenAI's embeddings format: the request's inputs, its errors, the response's vectors."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from pyembed.models import encoder

MAX_INPUTS = 2048  # OpenAI's own limit per request


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status,
            message,
            param,
            code,
            kind,
        )

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=self.status,
            content={
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": self.param,
                    "code": self.code,
                }
            },
        )


def inputs(body: dict[str, Any]) -> list[str]:
    """The request's texts, or an ApiError that says what is wrong with them."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ApiError(
            400, "'input' must be a string or a non-empty list of strings", param="input"
        )
    if len(raw) > MAX_INPUTS:
        raise ApiError(
            400, f"{len(raw)} inputs in one request; the limit is {MAX_INPUTS}", param="input"
        )
    for i, item in enumerate(raw):
        if isinstance(item, int) or (
            isinstance(item, list) and all(isinstance(t, int) for t in item)
        ):
            raise ApiError(
                400, "token arrays are not supported: send the text itself", param="input"
            )
        if not isinstance(item, str):
            raise ApiError(400, f"input[{i}] is not a string", param="input")
        if not item.strip():
            raise ApiError(400, f"input[{i}] is an empty string", param="input")
    return raw


def check_length(
    enc: encoder.Encoder, tokenizer: Any, texts: list[str], truncate: bool
) -> tuple[int, list[int]]:
    """Token counts for usage; refuse inputs over the window unless truncation was asked.
    ``tokenizer`` is a copy of the encoder's that only this check's thread uses."""
    counts = [
        len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    ]
    window = int(enc.model.max_seq_length or enc.version.max_seq_length)
    over = [i for i, n in enumerate(counts) if n > window]
    if over and not truncate:
        raise ApiError(
            400,
            f"input[{over[0]}] has {counts[over[0]]} tokens but model "
            f"{enc.version.label} reads {window}; split the text, or pass "
            '"truncate": true to embed only its beginning',
            param="input",
            code="context_length_exceeded",
        )
    return sum(min(n, window) for n in counts), over


def shape(
    vectors: np.ndarray, dimensions: Any, enc: encoder.Encoder, matryoshka: bool
) -> np.ndarray:
    """The vectors cut to ``dimensions`` (matryoshka-trained models only), re-normalized."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if not isinstance(dimensions, int) or not 1 <= dimensions < vectors.shape[1]:
        raise ApiError(
            400, f"dimensions must be between 1 and {vectors.shape[1]}", param="dimensions"
        )
    if not matryoshka:
        raise ApiError(
            400,
            f"model {enc.version.label} was not trained to be cut to fewer "
            "dimensions (train it with --loss matryoshka)",
            param="dimensions",
        )
    cut = vectors[:, :dimensions]
    result: np.ndarray = cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return result


def encoded(vector: np.ndarray, encoding: str) -> Any:
    """One embedding as the response carries it: a list of floats, or base64."""
    if encoding == "base64":  # little-endian float32, as OpenAI's clients decode it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
