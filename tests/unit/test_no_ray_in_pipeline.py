"""`pipeline/` is the domain and never imports ray (STYLE.md): checked in a fresh interpreter,
because this test session may already hold ray through other test modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import pipeline

def fail(name):
    raise SystemExit(f"cannot walk {name}")

names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.", onerror=fail)]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))}))
"""


def test_pipeline_never_imports_ray() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["ray"] == []
    # The walk really covered the package, stages and Kafka adapters included.
    assert {
        "pipeline.events",
        "pipeline.stages.playbook",
        "pipeline.kafka.lanes",
        "pipeline.storage.database",
    } <= set(report["modules"])
    assert len(report["modules"]) >= 30
