"""Deploy the Ray Serve LLM application of `cluster/serve-llm.yaml` next to the platform's own Serve
applications, on a GPU cluster with vLLM installed:

    python cluster/serve_llm.py cluster/serve-llm.yaml

`serve deploy FILE` would replace every Serve application on the cluster with the file's (the
operations API and the triage pool included): this adds the LLM application, imperatively, and
leaves the others alone. Nothing in the platform imports this module (ray.serve.llm needs vLLM).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def main(config_path: str) -> None:
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app  # vLLM: GPU nodes only

    config = yaml.safe_load(Path(config_path).read_text())
    ray.init(address="auto", namespace="sentinai")
    for application in config["applications"]:
        llm_configs = [LLMConfig(**entry) for entry in application["args"]["llm_configs"]]
        app = build_openai_app({"llm_configs": llm_configs})
        serve.run(app, name=application["name"], route_prefix=application["route_prefix"], blocking=False)
        print(f"deployed {application['name']} at {application['route_prefix']}/v1")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python cluster/serve_llm.py cluster/serve-llm.yaml")
    main(sys.argv[1])
