"""Model artifacts: the files of a model version and the one sha256 that identifies them.

A version's hash covers every file of its folder (path, size and content), so a truncated,
tampered or swapped file is caught before a model is ever loaded from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pyembed import errors

_CHUNK = 1 << 20
PACKAGE_PREFIX = "package:"


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of an artifact."""

    path: str
    size: int
    sha256: str


def _included(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in parts)


def file_sha256(path: Path) -> str:
    """The hex sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def manifest(folder: Path) -> list[FileEntry]:
    """The files of a model folder, sorted by path (hidden files and caches left out)."""
    if not folder.is_dir():
        raise errors.ModelError(f"{folder} is not a directory", hint="pass a model folder")
    entries = [
        FileEntry(p.relative_to(folder).as_posix(), p.stat().st_size, file_sha256(p))
        for p in sorted(folder.rglob("*"))
        if _included(p, folder)
    ]
    if not entries:
        raise errors.ModelError(f"{folder} holds no files")
    return entries


def manifest_sha256(entries: list[FileEntry]) -> str:
    """The artifact hash: sha256 over one "sha256 size path" line per file, sorted by path."""
    lines = "".join(
        f"{e.sha256} {e.size} {e.path}\n" for e in sorted(entries, key=lambda e: e.path)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def package_folder(source: str) -> Path:
    """The model folder shipped inside a Python package, for a ``package:MODULE`` source."""
    module_name = source.removeprefix(PACKAGE_PREFIX)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.ModelError(
            f"the model package {module_name!r} is not installed on this machine",
            hint=f"pip install {module_name.replace('_', '-')}",
        ) from exc
    return Path(str(module.get_model_path()))


def verify(folder: Path, expected_sha256: str, label: str) -> None:
    """Refuse a folder whose files do not hash to the registered sha256."""
    actual = manifest_sha256(manifest(folder))
    if actual != expected_sha256:
        raise errors.ModelError(
            f"model {label}: its files hash to {actual[:12]}…, but the registry says "
            f"{expected_sha256[:12]}…; the artifact is truncated, tampered with or another model",
            hint="re-register the model from a trusted copy, or reinstall its package",
        )


def local_folder(
    source: str, sha256: str, label: str, cache: Path, write_files: Callable[[Path], None]
) -> Path:
    """A verified local folder of a version's files: its package's own folder, or
    ``cache/<sha256>`` written once by ``write_files``.

    Files are written into a staging folder that is renamed into place, so processes (workers,
    servers, database backends) loading the same version at once never see half a folder; the
    one that loses the race drops its copy and uses the winner's.
    """
    if source.startswith(PACKAGE_PREFIX):
        packaged = package_folder(source)
        verify(packaged, sha256, label)
        return packaged
    folder = cache / sha256
    if folder.is_dir():
        verify(folder, sha256, label)
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        write_files(staging)
        verify(staging, sha256, label)
        try:
            staging.rename(folder)
        except OSError:  # another process cached the same hash first
            shutil.rmtree(staging, ignore_errors=True)
            verify(folder, sha256, label)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
