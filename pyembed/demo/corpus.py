"""The demo's real documents: the Python standard library's own documentation (its docstrings).

Every machine that runs pyembed has it, so the demo needs no download. A document is a public
function, class or method of a standard module: its qualified name and its docstring after the
summary line; the summary line ("Return the largest item in an iterable") is what a user would
type to find it, so it becomes the demo's query for that document. The docstrings are the Python
Software Foundation's, under the PSF License, like the interpreter that carries them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import random
import warnings

# Modules with side effects on import (a browser, a GUI, printed text) or no documentation
# worth searching are left out; the rest of this list is a broad slice of the library.
MODULES = (
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "builtins",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "filecmp",
    "fnmatch",
    "fractions",
    "functools",
    "getpass",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "http.cookies",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "multiprocessing",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "platform",
    "plistlib",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "sys",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
    "zoneinfo",
)


@dataclasses.dataclass(frozen=True)
class Document:
    """One documented object of the standard library."""

    name: str  # qualified, e.g. "collections.deque.appendleft"
    module: str  # the domain the demo ranks by
    kind: str  # function, class or method
    summary: str  # the docstring's first line: the demo's query for this document
    body: str  # the rest of the docstring


def _split(doc: str) -> tuple[str, str]:
    lines = doc.strip().splitlines()
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def _usable(summary: str, body: str) -> bool:
    # A summary that reads like a request, a body that says more than a signature.
    return 20 <= len(summary) <= 200 and len(body) >= 40 and not summary.endswith(":")


def documents(limit: int | None = None, seed: int = 0, max_body: int = 3000) -> list[Document]:
    """Documents of the listed modules (a random but fixed sample of ``limit`` when given),
    their bodies cut at a line break before ``max_body`` characters."""
    found: dict[str, Document] = {}
    seen_docs: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a build of Python without it (e.g. no _ssl)
                continue
            for name, obj in sorted(vars(module).items()):
                if name.startswith("_") or getattr(obj, "__module__", None) is None:
                    continue
                if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                    continue
                _add(
                    found,
                    seen_docs,
                    f"{module_name}.{name}",
                    module_name,
                    obj,
                    "class" if inspect.isclass(obj) else "function",
                )
                if inspect.isclass(obj):
                    for member, method in sorted(vars(obj).items()):
                        if not member.startswith("_") and callable(method):
                            _add(
                                found,
                                seen_docs,
                                f"{module_name}.{name}.{member}",
                                module_name,
                                method,
                                "method",
                            )
    docs = [
        dataclasses.replace(d, body=_cut(d.body, max_body))
        for d in sorted(found.values(), key=lambda d: d.name)
    ]
    if limit is not None and limit < len(docs):
        docs = sorted(random.Random(seed).sample(docs, limit), key=lambda d: d.name)
    return docs


def _add(
    found: dict[str, Document], seen: set[str], name: str, module: str, obj: object, kind: str
) -> None:
    doc = inspect.getdoc(obj)
    if not doc or doc in seen:  # re-exported objects and inherited docstrings once only
        return
    summary, body = _split(doc)
    if _usable(summary, body):
        seen.add(doc)
        found[name] = Document(name, module.split(".")[0], kind, summary, body)


def _cut(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    cut = body.rfind("\n", 0, limit)
    return body[: cut if cut > limit // 2 else limit].rstrip()
