"""The runtimes that execute a model version's files, behind one small interface.

``sentence-transformers`` runs the registered folder with torch (training always does);
``onnxruntime`` runs a version converted by ``pyembed models convert``; ``endpoint`` asks an
OpenAI-compatible server (endpoint_model.py, no files). Workers, the server, evaluation and the
in-backend ``pyembed.embed`` only ever call what :class:`EncodingModel` names (through
:func:`encode`), so a collection switches runtime the way it switches version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args

import numpy as np

from pyembed import errors, extras

Runtime = Literal["sentence-transformers", "onnxruntime", "endpoint"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)


class EncodingModel(Protocol):
    """What pyembed uses of a loaded model (a subset of SentenceTransformer's API)."""

    tokenizer: Any
    max_seq_length: int | None

    def get_embedding_dimension(self) -> int | None: ...

    def encode(
        self,
        sentences: list[str],
        *,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
    ) -> np.ndarray: ...


def encode(
    model: EncodingModel,
    texts: list[str],
    *,
    prompt: str | None,
    input_type: str,
    batch_size: int = 32,
) -> np.ndarray:
    """``model.encode`` of queries or documents (``input_type``): an endpoint is told which,
    since prefixes cannot say it (most hosted models have none)."""
    extra = {"input_type": input_type} if getattr(model, "takes_input_type", False) else {}
    vectors = model.encode(
        texts,
        prompt=prompt,
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
        **extra,
    )
    return np.asarray(vectors, dtype=np.float32)


def open_folder(folder: Path, runtime: str, *, device: str | None = None) -> EncodingModel:
    """The model in ``folder``, run by ``runtime`` (a version's ``runtime`` column)."""
    if runtime == "onnxruntime":
        from pyembed.models import onnx_model

        return onnx_model.OnnxModel(folder)
    if runtime == "endpoint":
        raise errors.ModelError(
            "an endpoint model has no folder", hint="load it with loading.load (its settings)"
        )
    if runtime != "sentence-transformers":
        raise errors.ModelError(
            f"unknown model runtime {runtime!r}", hint=f"known runtimes: {', '.join(RUNTIMES)}"
        )
    with extras.needed("embed"):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    # Its encode() takes far more than pyembed passes; the subset is what the protocol names.
    return cast(EncodingModel, model)
