"""Running a converted version with ONNX Runtime: tokenizer + one graph, no torch needed.

The folder (written by :mod:`pyembed.models.conversion`) holds ``model.onnx`` — the whole
sentence-transformers pipeline (transformer, pooling, dense layers, normalization) as one graph
from token ids to the sentence embedding — the tokenizer's files and ``pyembed_onnx.json``.
Texts are tokenized in one call, sorted by token count and padded per batch only to the longest
in it, which keeps padding waste low as the torch path does.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pyembed import errors, extras

MANIFEST = "pyembed_onnx.json"
GRAPH = "model.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a converted folder says about its graph."""

    format: int
    precision: str
    dimensions: int
    max_seq_length: int
    converted_from: str  # the source version's artifact sha256, for a folder seen outside pyembed

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file() or not (folder / GRAPH).is_file():
            raise errors.ModelError(
                f"{folder} is not a converted ONNX model (no {MANIFEST} or {GRAPH})",
                hint="convert a registered version with `pyembed models convert VERSION`",
            )
        found = cls(**json.loads(path.read_text()))
        if found.format != FORMAT:
            raise errors.ModelError(
                f"{folder}: ONNX folder format {found.format}, this pyembed reads {FORMAT}",
                hint="convert the parent version again with this pyembed",
            )
        return found


def threads() -> int:
    """Intra-op threads: ``PYEMBED_ONNX_THREADS``, else ONNX Runtime's choice (0: the cores)."""
    return int(os.environ.get("PYEMBED_ONNX_THREADS", "0"))


class OnnxModel:
    """A converted version, with the encode() interface of :class:`runtimes.EncodingModel`."""

    def __init__(self, folder: Path) -> None:
        self.manifest = Manifest.read(folder)
        with extras.needed("onnx"):
            import onnxruntime
            from transformers import AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.max_seq_length: int | None = self.manifest.max_seq_length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads()
        options.log_severity_level = 3  # its warnings are about graph details, not the caller's
        self.session = onnxruntime.InferenceSession(
            str(folder / GRAPH), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._pad = int(self.tokenizer.pad_token_id or 0)

    def get_embedding_dimension(self) -> int:
        return self.manifest.dimensions

    def encode(
        self,
        sentences: list[str],
        *,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
    ) -> np.ndarray:
        """Embed texts (``prompt`` prepended, as sentence-transformers does) in sorted batches."""
        del show_progress_bar, convert_to_numpy  # always numpy, never a bar (callers show theirs)
        dims = self.manifest.dimensions
        if not sentences:
            return np.zeros((0, dims), dtype=np.float32)
        texts = [prompt + s for s in sentences] if prompt else list(sentences)
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.manifest.max_seq_length,
            padding=False,
            verbose=False,
        )["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out = np.empty((len(ids), dims), dtype=np.float32)
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + batch_size]
            width = len(ids[batch[0]])
            input_ids = np.full((len(batch), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                input_ids[row, : len(ids[index])] = ids[index]
                mask[row, : len(ids[index])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask}
            feeds["token_type_ids"] = np.zeros_like(input_ids)
            (vectors,) = self.session.run([OUTPUT], {k: feeds[k] for k in self._inputs})
            out[batch] = vectors
        return out
