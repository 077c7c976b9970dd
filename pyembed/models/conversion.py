"""Converting a registered version to ONNX Runtime: fp32, or int8 with dynamic quantization.

The whole sentence-transformers pipeline is exported with torch's exporter into one graph from
token ids to the sentence embedding; for int8 its MatMul weights are quantized per channel by
ONNX Runtime (activations stay dynamic, so no calibration data is needed). Before the result is
registered, it encodes probe texts beside the torch model: an export that changed the outputs is
refused, and the agreement of an int8 version is recorded in its ``produced_by``. The result is
the next version of the same family with the source as its parent, so it is evaluated and
switched to blue/green like any version; torch stays the training runtime.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyembed import errors, extras
from pyembed.db import database, queries
from pyembed.models import folders, loading, onnx_model, registry, runtimes

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
# Below these, the graph does not compute what the torch model computes (fp32), or quantization
# has broken this model (int8): refuse rather than register a version that ranks differently.
MIN_COSINE: dict[str, float] = {"fp32": 0.999, "int8": 0.9}
PROBES = [
    "a stone wall around the old city",
    "apple pie",
    "How do I reset my password?",
    "the harbour at night, with the lights of the ships on the water",
    "PostgreSQL stores vectors next to the rows they describe",
    "x",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "an instrument for measuring atmospheric pressure",
    "QUERY: cheap flights from Lisbon to Oslo in March",
    # Longer than any window: the graph must truncate exactly where torch does.
    "a long text " + "that keeps going with more and more words " * 80,
]


def convert(
    db: database.Database, version_id: int, precision: Precision = "int8"
) -> registry.Registered:
    """Register an ONNX Runtime version of ``version_id`` (its files in the database); a ready
    conversion at that precision is returned instead of made again."""
    if precision not in MIN_COSINE:
        raise errors.ModelError(
            f"unknown precision {precision!r}", hint=f"choose one of: {', '.join(MIN_COSINE)}"
        )
    with db.session() as conn:
        source = loading.fetch_version(conn, version_id)
        if source.runtime != "sentence-transformers":
            raise errors.ModelError(
                f"model {source.label} is already an ONNX Runtime version",
                hint=f"convert the version it came from (id {source.parent_version_id})",
            )
        done = conn.execute(
            queries.get("converted_version"), {"id": version_id, "precision": precision}
        ).fetchone()
        if done is not None:
            logger.info(
                "%s is already converted (%s): version id %s", source.label, precision, done[0]
            )
            return registry.Registered(*done)
        folder = loading.materialize(conn, source)
    logger.info("converting %s to ONNX Runtime (%s)", source.label, precision)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyembed-onnx-") as scratch:
        out = Path(scratch) / "converted"
        out.mkdir()
        agreement, versions = _export(folder, out, source, precision, Path(scratch))
        info = folders.ModelInfo(
            task="embedding",
            dimensions=source.dimensions,
            max_seq_length=source.max_seq_length,
            pooling=source.pooling,
            normalize=source.normalize,
            query_prefix=source.query_prefix,
            document_prefix=source.document_prefix,
        )
        produced_by = {
            "how": "converted",
            "from_version": version_id,
            "runtime": "onnxruntime",
            "precision": precision,
            "quantization": "dynamic, per channel, int8 weights" if precision == "int8" else None,
            "probe_cosine": agreement,
            "seconds": round(time.monotonic() - started, 1),
            **versions,
        }
        return registry.store(
            db,
            source.model_name,
            out,
            info,
            base_model=f"{source.model_name}@{source.version}",
            parent_version_id=version_id,
            kind="converted",
            produced_by=produced_by,
            runtime="onnxruntime",
            precision=precision,
        )


def _export(
    folder: Path, out: Path, source: loading.ModelVersion, precision: str, scratch: Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """Write the converted folder into ``out``; the probe agreement and the tool versions."""
    with extras.needed("onnx"):
        import onnx
        import onnxruntime
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic

    # The torch model as workers load it (a SentenceTransformer: iterated, exported below).
    model: Any = runtimes.open_folder(folder, "sentence-transformers", device="cpu")
    model.eval()
    _check_exportable(model, source)
    tokenizer = model.tokenizer
    uses_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    graph = scratch / "fp32.onnx" if precision == "int8" else out / onnx_model.GRAPH
    example = tokenizer(
        ["a short text", "a somewhat longer example text"], padding=True, return_tensors="pt"
    )
    args = tuple(
        example[name] if name in example else torch.zeros_like(example["input_ids"])
        for name in onnx_model.INPUTS
    )
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: length} for name in onnx_model.INPUTS}
    try:
        with torch.no_grad(), _quiet():
            torch.onnx.export(
                _pipeline(model, uses_types),
                args,
                str(graph),
                input_names=list(onnx_model.INPUTS),
                output_names=[onnx_model.OUTPUT],
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter's errors are many and internal
        raise errors.ModelError(
            f"model {source.label} could not be exported to ONNX: {exc}",
            hint="only text models of sentence-transformers' Transformer/Pooling/Dense/Normalize "
            "modules convert; keep this version on the sentence-transformers runtime",
        ) from exc
    if precision == "int8":
        with _quiet():
            quantize_dynamic(
                str(graph),
                str(out / onnx_model.GRAPH),
                per_channel=True,  # per tensor loses far more (cosine 0.966 vs 0.994 on MiniLM)
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    tokenizer.save_pretrained(str(out))
    onnx_model.Manifest(
        format=onnx_model.FORMAT,
        precision=precision,
        dimensions=source.dimensions,
        max_seq_length=int(model.max_seq_length or source.max_seq_length),
        converted_from=str(source.artifact_sha256),
    ).write(out)
    agreement = _agreement(model, onnx_model.OnnxModel(out))
    if agreement["min"] < MIN_COSINE[precision]:
        raise errors.ModelError(
            f"the {precision} ONNX version of {source.label} disagrees with it: cosine "
            f"{agreement['min']:.4f} on a probe text (at least {MIN_COSINE[precision]} needed)",
            hint="use --precision fp32, or keep this version on sentence-transformers",
        )
    tools = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    return agreement, tools


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's and quantizer's chatter (torchvision ops it skips, a line per tensor)
    out of the caller's output. The quantizer logs on the root logger, which without a handler
    would also configure logging for the whole process."""
    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [each.level for each in chatty]
    root = logging.getLogger()
    guard = logging.NullHandler()
    for each in chatty:
        each.setLevel(logging.ERROR)
    root.addHandler(guard)  # a root with a handler is not given a default one by logging.warning
    root.addFilter(_not_onnxruntime)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(_not_onnxruntime)
        root.removeHandler(guard)
        for each, level in zip(chatty, levels, strict=True):
            each.setLevel(level)


def _not_onnxruntime(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname


def _pipeline(model: Any, uses_types: bool) -> Any:
    """The model as one module of token tensors, for the exporter (torch is imported lazily)."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if uses_types:
                features["token_type_ids"] = token_type_ids
            return self.model(features)["sentence_embedding"]

    return Pipeline().eval()


def _check_exportable(model: Any, source: loading.ModelVersion) -> None:
    """Refuse what one graph over the whole text cannot reproduce."""
    prefixed = bool(source.query_prefix or source.document_prefix)
    for module in model:
        if prefixed and getattr(module, "include_prompt", True) is False:
            raise errors.ModelError(
                f"model {source.label} pools without its prompt tokens, which the ONNX graph "
                "cannot tell apart from the text",
                hint="keep this version on the sentence-transformers runtime",
            )


def _agreement(model: Any, converted: onnx_model.OnnxModel) -> dict[str, float]:
    """Cosine between torch and ONNX vectors of the probe texts, in mixed batches and alone."""
    reference = model.encode(PROBES, batch_size=4, show_progress_bar=False)
    mixed = converted.encode(PROBES, batch_size=4)
    alone = np.vstack([converted.encode([text]) for text in PROBES[:3]])
    reference = np.asarray(reference, dtype=np.float32)

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return np.asarray(np.sum(a * b, axis=1) / norms, dtype=np.float64)

    scores = np.concatenate([cosine(reference, mixed), cosine(reference[:3], alone)])
    return {"mean": round(float(scores.mean()), 5), "min": round(float(scores.min()), 5)}
