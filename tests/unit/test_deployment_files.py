"""The deployment files: `ray-cluster.yaml` passes Ray's own validator, `docker-compose.yml` the
Compose Specification's JSON schema, and both say what docs/deployment.md promises.

No network and no Ray cluster: Ray's validator is a JSON schema plus a few consistency checks, and a
guard fails any test that opens a socket (so `prepare_config` must stay offline, e.g. never call AWS).
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "ray-cluster.yaml"
COMPOSE_YAML = ROOT / "docker-compose.yml"
# The repository lives at <root>/main and the shared material at <root>/shared.
COMPOSE_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "compose-spec.json"

RAY_SERVICES = ("ray-head", "ray-worker", "ray-gpu-worker")
GPU_INSTANCE_FAMILIES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p5.")


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[None]:
    # Module scope and autouse: in place before the module-scoped fixtures below run prepare_config.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before touching the cloud: fill defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return load_yaml(CLUSTER_YAML)


@pytest.fixture(scope="module")
def prepared(cluster: dict[str, Any]) -> dict[str, Any]:
    return ray_validate(cluster)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_YAML)


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft7Validator:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(
            f"Compose schema not found at {COMPOSE_SCHEMA}: the checkout must sit next to shared/ "
            "(<root>/main and <root>/shared/schemas/compose-spec.json)"
        )
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def ray_start_line(commands: list[str]) -> str:
    (line,) = [command for command in commands if "ray start" in command]
    return line


# ray-cluster.yaml


def test_network_guard_is_in_place() -> None:
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("ec2.us-west-2.amazonaws.com", 443))


def test_cluster_config_passes_rays_validator_offline(prepared: dict[str, Any]) -> None:
    assert prepared["cluster_name"] == "sentinai"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # prepare_config filled the head's max_workers: the head type itself is never scaled.
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_cluster_has_head_cpu_and_gpu_node_types(cluster: dict[str, Any]) -> None:
    node_types = cluster["available_node_types"]
    assert set(node_types) == {"head", "cpu_worker", "gpu_worker"}
    assert cluster["head_node_type"] == "head"
    for name in ("head", "cpu_worker"):
        assert "GPU" not in node_types[name]["resources"], name
        assert not node_types[name]["node_config"]["InstanceType"].startswith(GPU_INSTANCE_FAMILIES)

    gpu = node_types["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1
    assert gpu["resources"]["triage_gpu"] >= 1
    assert gpu["node_config"]["InstanceType"].startswith(GPU_INSTANCE_FAMILIES)
    assert gpu["min_workers"] == 0, "GPU nodes should start only when triage asks for a GPU"


def test_cluster_worker_bounds_are_consistent(cluster: dict[str, Any]) -> None:
    # Ray checks only the global bound; a node type with min_workers > max_workers passes its validator.
    workers = {
        name: t for name, t in cluster["available_node_types"].items() if name != cluster["head_node_type"]
    }
    for name, node_type in workers.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= cluster["max_workers"], name
    assert sum(t["min_workers"] for t in workers.values()) <= cluster["max_workers"]
    assert cluster["idle_timeout_minutes"] > 0
    assert cluster["upscaling_speed"] > 0


def test_cluster_setup_installs_the_uploaded_tree(cluster: dict[str, Any], prepared: dict[str, Any]) -> None:
    assert cluster["file_mounts"]["~/sentinai"] == "."
    assert {".venv", ".git"} <= set(cluster["rsync_exclude"])
    install = 'pip install "sentinai-on-ray @ file://$HOME/sentinai"'
    # prepare_config merges setup_commands into both lists: every node installs the project.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(install in command for command in prepared[key]), key
    assert any("boto3" in command for command in prepared["head_setup_commands"])


def test_cluster_start_commands(cluster: dict[str, Any]) -> None:
    head = cluster["head_start_ray_commands"]
    head_start = ray_start_line(head)
    assert "ray stop" in head and head.index("ray stop") < head.index(head_start)
    for flag in (
        "--head",
        "--port=6380",
        "--metrics-export-port=8085",
        "--dashboard-host=0.0.0.0",
        "--autoscaling-config=~/ray_bootstrap_config.yaml",
    ):
        assert flag in head_start.split(), flag
    assert "RAY_AUTH_MODE=token" in head_start
    platform = [command for command in head if "sentinai up" in command]
    assert len(platform) == 1 and head.index(platform[0]) > head.index(head_start)
    assert "RAY_AUTH_MODE=token" in platform[0] and "RAY_ADDRESS=" in platform[0]

    workers = cluster["worker_start_ray_commands"]
    worker_start = ray_start_line(workers)
    assert workers.index("ray stop") < workers.index(worker_start)
    assert "--address=$RAY_HEAD_IP:6380" in worker_start.split()
    assert "--metrics-export-port=8085" in worker_start.split()
    assert "RAY_AUTH_MODE=token" in worker_start
    # Every node gets the same token file.
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def _unknown_top_level_key(config: dict[str, Any]) -> None:
    config["autoscaling_mode"] = "aggressive"


def _min_workers_over_global_max(config: dict[str, Any]) -> None:
    config["max_workers"] = 2
    config["available_node_types"]["cpu_worker"]["min_workers"] = 3


def _head_type_missing(config: dict[str, Any]) -> None:
    config["head_node_type"] = "no_such_type"


def _fractional_gpu_resource(config: dict[str, Any]) -> None:
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        (_unknown_top_level_key, jsonschema.ValidationError, "autoscaling_mode"),
        (_min_workers_over_global_max, ValueError, "max_workers"),
        (_head_type_missing, ValueError, "head_node_type"),
        (_fractional_gpu_resource, jsonschema.ValidationError, "0.5"),
    ],
)
def test_broken_cluster_config_is_rejected(
    cluster: dict[str, Any], breakage: Any, error: type[Exception], message: str
) -> None:
    broken = copy.deepcopy(cluster)
    breakage(broken)
    with pytest.raises(error, match=message):
        ray_validate(broken)


# docker-compose.yml


def test_compose_validates_against_the_compose_spec(
    compose: dict[str, Any], compose_validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in compose_validator.iter_errors(compose)]
    assert errors == []
    assert {"kafka", "postgres", "ray-head", "ray-worker"} <= set(compose["services"])


@pytest.mark.parametrize(
    ("path", "value", "error_path"),
    [
        (("services", "kafka", "ports"), 9092, ["services", "kafka", "ports"]),
        (("services", "ray-worker", "replicas_please"), 3, ["services", "ray-worker"]),
        (
            ("services", "postgres", "healthcheck", "interval"),
            5,
            ["services", "postgres", "healthcheck", "interval"],
        ),
    ],
)
def test_broken_compose_is_rejected(
    compose: dict[str, Any],
    compose_validator: jsonschema.Draft7Validator,
    path: tuple[str, ...],
    value: object,
    error_path: list[str],
) -> None:
    broken = copy.deepcopy(compose)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error_paths = [list(e.absolute_path) for e in compose_validator.iter_errors(broken)]
    assert error_paths, "the schema accepted a broken file"
    assert error_paths == [error_path] * len(error_paths)


def test_kafka_runs_kraft_in_the_runbooks_container(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert not any("zookeeper" in name for name in services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9.")
    assert kafka["container_name"] == "sentinai-kafka"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in " ".join(
        kafka["healthcheck"]["test"]
    )


def test_postgres_service(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert env_of(postgres)["POSTGRES_DB"] == "sentinai"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])


def test_ray_head_runs_the_platform_against_kafka_and_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    head = services["ray-head"]
    env = env_of(head)
    postgres_env = env_of(services["postgres"])
    expected_url = (
        f"postgresql+asyncpg://{postgres_env['POSTGRES_USER']}:{postgres_env['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres_env['POSTGRES_DB']}"
    )
    assert env["DATABASE_URL"] == expected_url
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["RAY_ADDRESS"] in ("auto", "127.0.0.1:6380")
    assert env["SENTINAI_SERVE__ENABLED"] == "true"

    command = command_of(head)
    for flag in ("ray start --head", "--port=6380", "--dashboard-host=0.0.0.0", "--metrics-export-port=8085"):
        assert flag in command, flag
    assert command.index("sentinai up") > command.index("ray start --head")

    published = {str(port).rsplit(":", 1)[-1].split()[0] for port in head["ports"]}
    assert {"8000", "8265", "8085"} <= published
    assert head["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert head["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (ROOT / head["build"]["context"] / head["build"]["dockerfile"]).is_file()


def test_ray_workers_can_scale(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("ray-worker", "ray-gpu-worker"):
        worker = services[name]
        assert "container_name" not in worker, name
        assert "ports" not in worker, name
        command = command_of(worker)
        assert "ray start --address=ray-head:6380" in command and "--block" in command, name
        assert worker["image"] == services["ray-head"]["image"], name
        assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy", name


def test_gpu_worker_is_opt_in_and_reserves_a_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["ray-gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    command = command_of(gpu)
    assert "--num-gpus=1" in command and "triage_gpu" in command


def test_ray_auth_mode_is_the_same_on_every_ray_node(compose: dict[str, Any]) -> None:
    envs = [env_of(compose["services"][name]) for name in RAY_SERVICES]
    assert {env["RAY_AUTH_MODE"] for env in envs} == {"token"}
    tokens = {env["RAY_AUTH_TOKEN"] for env in envs}
    assert len(tokens) == 1 and next(iter(tokens)).startswith("${RAY_AUTH_TOKEN:?")


def test_every_service_restarts_and_reports_health(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["restart"] in ("unless-stopped", "always"), name
        assert service["healthcheck"]["test"], name


def test_image_installs_the_project(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "cluster" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in dockerfile.splitlines()
    assert "pip install ." in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".git", ".sentinai"} <= ignored
    assert "**/__pycache__" in ignored
