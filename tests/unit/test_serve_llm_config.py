"""cluster/serve-llm.yaml is a valid Serve config whose autoscaling keys Ray knows (Serve silently
ignores unknown autoscaling keys, so a typo would pass unnoticed at deploy time)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]


def test_serve_llm_config_validates_with_known_autoscaling_keys() -> None:
    config = yaml.safe_load((ROOT / "cluster" / "serve-llm.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    [application] = config["applications"]
    assert application["route_prefix"] == "/llm" and application["import_path"] == "ray.serve.llm:build_openai_app"
    for llm in application["args"]["llm_configs"]:
        keys = set(llm["deployment_config"]["autoscaling_config"])
        assert keys <= set(AutoscalingConfig.model_fields), keys - set(AutoscalingConfig.model_fields)
        assert "num_gpus" not in str(llm.get("deployment_config", {}))  # Serve LLM reserves GPUs itself


def test_the_platform_never_imports_serve_llm() -> None:
    for path in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("actors/**/*.py"), *ROOT.glob("serve/**/*.py")]:
        tree = ast.parse(path.read_text())
        modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not any(module.startswith("ray.serve.llm") or module == "vllm" for module in modules), path
