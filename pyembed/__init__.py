"""pyembed: PostgreSQL + pgvector as a self-improving embedding platform."""

from importlib.metadata import PackageNotFoundError, version

from pyembed.errors import PyembedError

try:
    __version__ = version("pyembed")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["PyembedError", "__version__"]
