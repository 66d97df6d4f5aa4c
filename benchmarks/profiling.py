"""py-spy profiles of the busiest processes during a run, summarised to the functions that cost most.

`py-spy record --format raw` writes folded stacks (`frame;frame;... count`, one line per distinct
stack, frames as `function (file:line)`). `--gil` keeps only samples of the thread holding the GIL,
so the shares are shares of the process's Python CPU time (py-spy's idle detection does not work on
Ray workers: a main thread parked in Ray's C++ task loop counts as busy). `--nonblocking` keeps
py-spy from pausing the target on every sample (less perturbation, an occasional torn stack).
SQLAlchemy's asyncio layer runs statements in greenlets: their stacks appear as separate roots
(starting at `Connection.execute`), cut off from the `StagePoolActor.process` frame that drives them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FRAME_LINE = re.compile(r":\d+\)$")


@dataclass
class Profile:
    name: str
    pid: int
    path: Path
    process: subprocess.Popen[bytes]


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(targets: list[tuple[str, int]], *, duration_s: int, out_dir: Path, rate_hz: int = 100) -> list[Profile]:
    """Start one `py-spy record` per (name, pid), all at once. Returns [] when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles = []
    for name, pid in targets:
        path = out_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".folded")
        command = [binary, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", str(rate_hz),
                   "--nonblocking", "--gil", "--format", "raw", "--output", str(path)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        profiles.append(Profile(name, pid, path, process))
    return profiles


def finish(profiles: list[Profile], timeout_s: float) -> dict[str, Any]:
    """Wait for every profile (killing those still running after `timeout_s`), then summarise them."""
    summaries: dict[str, Any] = {}
    for profile in profiles:
        try:
            _, stderr = profile.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            profile.process.kill()
            _, stderr = profile.process.communicate()
        entry: dict[str, Any] = {"pid": profile.pid, "file": str(profile.path)}
        if profile.path.exists():
            entry.update(summarise_folded(profile.path))
        else:
            entry["error"] = stderr.decode(errors="replace")[-500:]
        summaries[profile.name] = entry
    return summaries


def stop(profiles: list[Profile]) -> None:
    for profile in profiles:
        if profile.process.poll() is None:
            profile.process.kill()
            profile.process.wait()


def summarise_folded(path: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples per function: `self` (the innermost frame) and `inclusive` (anywhere on the stack)."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_FRAME_LINE.sub(")", frame) for frame in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = lambda counter: [[frame, round(100.0 * n / total, 1)] for frame, n in counter.most_common(top)]  # noqa: E731
    return {"samples": total, "self_pct": share(self_counts) if total else [], "inclusive_pct": share(inclusive) if total else []}
