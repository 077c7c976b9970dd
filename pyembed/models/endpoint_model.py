"""A registered endpoint version as a model: the :class:`runtimes.EncodingModel` interface over
:class:`endpoint_client.Client`, so the worker, ``pyembed serve``, evaluation, distillation and
the in-backend ``pyembed.embed`` use a hosted model the way they use a folder.

There is no tokenizer for a hosted model here. Chunking counts a stand-in token per four
characters of a word (about what BPE tokenizers give English) and keeps every chunk under half
the endpoint's input limit, so a text the estimate undercounts still fits; an input the endpoint
refuses anyway fails alone, with the provider's message, in ``pyembed.failed_items``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import urllib.parse
from typing import Any

import numpy as np

from pyembed import errors
from pyembed.models import endpoint_client

# The fields that decide which vectors come back: their hash is the version's artifact hash
# (limits, batch size and timeout may be tuned in place).
# The key's variable too: a writer must not redirect a registered version to another secret.
_IDENTITY = ("base_url", "model", "dimensions", "send_dimensions", "send_input_type", "api_key_env")
_PIECE = re.compile(r"\S{1,4}")
_WORD = re.compile(r"\S+")
CHARS_PER_TOKEN = 4


def spec_from_json(stored: dict[str, Any]) -> endpoint_client.EndpointSpec:
    """The spec a version's ``endpoint`` column holds (unknown keys refused, not ignored)."""
    known = {field.name for field in dataclasses.fields(endpoint_client.EndpointSpec)}
    unknown = sorted(set(stored) - known - {"max_input_tokens"})
    if unknown:
        raise errors.ModelError(
            f"endpoint settings have unknown fields: {', '.join(unknown)}",
            hint=f"known fields: {', '.join(sorted(known | {'max_input_tokens'}))}",
        )
    fields = {key: value for key, value in stored.items() if key in known}
    try:
        return endpoint_client.EndpointSpec(**fields)
    except TypeError as exc:
        raise errors.ModelError(f"endpoint settings are incomplete: {exc}") from None


def spec_to_json(spec: endpoint_client.EndpointSpec, max_input_tokens: int) -> dict[str, Any]:
    return {**dataclasses.asdict(spec), "max_input_tokens": max_input_tokens}


def spec_sha256(spec: endpoint_client.EndpointSpec) -> str:
    """The artifact hash of an endpoint version: what decides its vectors, canonically."""
    identity = {name: getattr(spec, name) for name in _IDENTITY}
    identity["base_url"] = spec.base_url.rstrip("/")
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def origin(base_url: str) -> str:
    parsed = urllib.parse.urlsplit(base_url)
    return f"{parsed.scheme}://{parsed.netloc}".lower()


def check_origin(spec: endpoint_client.EndpointSpec, allowed: str | None) -> None:
    """Refuse an endpoint whose server the admin has not listed in ``endpoint_origins``."""
    wanted = origin(spec.base_url)
    if wanted in {entry.rstrip("/").lower() for entry in (allowed or "").split()}:
        return
    raise errors.ConfigError(
        f"endpoint model {spec.model!r} is at {wanted}, which is not in the admin's list of "
        "endpoint servers (pyembed.settings 'endpoint_origins'): no key is sent there",
        hint=f"as the database owner: `pyembed models allow-endpoint {wanted}`",
    )


def check_url(base_url: str) -> None:
    """No credentials in a stored URL: readers can see it."""
    parsed = urllib.parse.urlsplit(base_url)
    secret_query = [
        name
        for name, _ in urllib.parse.parse_qsl(parsed.query)
        if re.search(r"key|token|secret|password|sig", name, re.IGNORECASE)
    ]
    if parsed.username or parsed.password or secret_query:
        what = "user:password" if parsed.username else ", ".join(secret_query)
        raise errors.ConfigError(
            f"the endpoint URL carries a credential ({what}); "
            "every role that reads pyembed.model_versions would see it",
            hint="give the URL without it and the key's environment variable with api_key_env",
        )


class StandInTokenizer:
    """The part of a Hugging Face tokenizer the chunker calls: pieces of up to four characters
    of a word, with character offsets and the word each piece belongs to."""

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 0

    def __call__(self, text: str | list[str], **_: Any) -> _Encoding:
        texts = [text] if isinstance(text, str) else text
        encoding = _Encoding([_pieces(one) for one in texts])
        return encoding.single() if isinstance(text, str) else encoding


class _Encoding(dict[str, Any]):
    def __init__(self, pieces: list[list[tuple[int, int, int]]]) -> None:
        super().__init__(
            input_ids=[[0] * len(p) for p in pieces],
            offset_mapping=[[(s, e) for s, e, _ in p] for p in pieces],
        )
        self._words = [[w for _, _, w in p] for p in pieces]

    def word_ids(self, index: int = 0) -> list[int | None]:
        return list(self._words[index])

    def single(self) -> _Encoding:
        one = _Encoding([])
        one.update(input_ids=self["input_ids"][0], offset_mapping=self["offset_mapping"][0])
        one._words = self._words
        return one


def _pieces(text: str) -> list[tuple[int, int, int]]:
    found: list[tuple[int, int, int]] = []
    for word_id, word in enumerate(_WORD.finditer(text)):
        start = word.start()
        for piece in _PIECE.finditer(word.group()):
            found.append((start + piece.start(), start + piece.end(), word_id))
    return found


class EndpointModel:
    """An endpoint version with the encode() interface of :class:`runtimes.EncodingModel`."""

    takes_input_type = True

    def __init__(
        self, spec: endpoint_client.EndpointSpec, *, max_input_tokens: int, normalize: bool
    ) -> None:
        self.spec = spec
        self.client = endpoint_client.Client(spec)
        self.tokenizer: Any = StandInTokenizer()
        # Half the endpoint's limit in stand-in tokens: the margin for texts the estimate
        # undercounts (code, numbers, other scripts).
        self.max_seq_length: int | None = max(8, max_input_tokens // 2)
        self.normalize = normalize

    def get_embedding_dimension(self) -> int | None:
        return self.spec.dimensions

    def encode(
        self,
        sentences: list[str],
        *,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        input_type: str = "document",
    ) -> np.ndarray:
        """Vectors from the endpoint, ``spec.batch_size`` texts a request (``batch_size`` is
        the local models' knob and unused here)."""
        texts = [(prompt or "") + sentence for sentence in sentences]
        vectors = self.client.embed(texts, input_type=input_type)
        if self.normalize and len(vectors):
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        return vectors.astype(np.float32, copy=False)


def open_version(
    stored: dict[str, Any], *, normalize: bool, allowed: str | None, sha256: str, label: str
) -> EndpointModel:
    """The model of a version's ``endpoint`` column, once its server is allowed and its
    settings are the registered ones (writers may update version rows: a changed URL, model or
    key variable is refused, the way changed files are)."""
    spec = spec_from_json(stored)
    if spec_sha256(spec) != sha256:
        raise errors.ModelError(
            f"the endpoint settings of model {label} were changed after it was registered "
            "(their sha256 differs from the registered one)",
            hint="register the new settings as a new version with `pyembed models "
            "register-endpoint`",
        )
    check_url(spec.base_url)
    check_origin(spec, allowed)
    return EndpointModel(
        spec, max_input_tokens=int(stored.get("max_input_tokens") or 512), normalize=normalize
    )
