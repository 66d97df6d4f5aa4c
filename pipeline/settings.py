"""The configuration tree. Defined here, read from the environment once in `cluster.config`.

The runbook's variables keep their names (`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`, `RAY_ADDRESS`,
and `WORKER_TYPE` / `CONCURRENCY` / `GROUP_ID` for `sentinai worker`); everything else is
`SENTINAI_<SECTION>__<KEY>`, e.g. `SENTINAI_KAFKA__PARTITIONS=12`. Every model is frozen and rejects
unknown keys, so a typo fails at start-up naming the key instead of being ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STAGE_NAMES: tuple[str, ...] = ("intake", "triage", "policy", "playbook", "tool", "feedback")
"""Stages fed by Kafka, in pipeline order. `sla_monitor` is periodic and has no input topic."""


def default_data_dir() -> Path:
    """A dedicated directory: as root the embedded PostgreSQL makes every parent of its data directory
    world-readable, so it must not live under a home directory."""
    if os.geteuid() == 0:
        return Path("/var/lib/sentinai")
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "sentinai"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The bundled broker lists every batch a partition has stored whenever a fetch finds records there,
# so its CPU grows with partitions x batches stored; on one machine one consumer per stage reads
# every partition anyway. 2 instead of 8, run side by side at 500 to 1,100/s on two cores: the
# broker's CPU per exception fell by a third to a half (docs/benchmarks.md, round 8).
BUNDLED_BROKER_PARTITIONS = 2


class KafkaSettings(_Frozen):
    bootstrap_servers: str | None = Field(
        default=None, description="host:port list; unset starts the bundled broker on 127.0.0.1"
    )
    bundled_port: int = Field(default=19092, ge=1, le=65535, description="port of the bundled broker")
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._\-]*$", description="prefix for every topic name")
    # Unset: 8, or on the bundled broker BUNDLED_BROKER_PARTITIONS (see there); `Settings` decides.
    partitions: int = Field(
        default=8, ge=1, le=1024,
        description="partitions of each topic created at start-up (unset: 8; on the bundled broker 2, or the most consumers a stage has)",
    )
    replication_factor: int = Field(default=1, ge=1, le=16)
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1500, ge=100)
    max_poll_records: int = Field(default=1000, ge=1, le=100_000)
    # A fetch that finds records returns at once; an empty one costs the broker and the consumer CPU
    # each time it returns, and the bundled broker answers a waiting fetch only at intervals, so a
    # record that arrives during the wait is delivered up to half the wait later (benchmarks/fetch_wait.py).
    # 200 ms (250 until round 12): at 500/s on two cores p99 725-867 ms against 920-1,011 with 250,
    # and 1,000/s kept up with either, given the embedded PostgreSQL's settings. 100 ms halves the
    # latency at 500/s where CPU is to spare, for 18 % more CPU per exception, which costs
    # throughput at 1,000/s (docs/benchmarks.md).
    fetch_timeout_ms: int = Field(default=200, ge=1, description="longest wait for a fetch to fill")
    commit_interval_ms: int = Field(
        default=1000, ge=0, le=60_000, description="consumers commit offsets at most this often (0: after every fetch)"
    )
    producer_linger_ms: int = Field(default=5, ge=0)
    max_request_size: int = Field(default=8 * 1024 * 1024, ge=1024)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class DatabaseSettings(_Frozen):
    url: SecretStr | None = Field(default=None, description="postgresql+asyncpg:// URL; unset starts embedded PostgreSQL")
    pool_size: int = Field(default=4, ge=1, le=200)
    statement_timeout_ms: int = Field(default=30_000, ge=100)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None:
            return None
        raw = url.get_secret_value()
        if raw.startswith("postgresql://") or raw.startswith("postgres://"):
            raw = "postgresql+asyncpg://" + raw.split("://", 1)[1]
        if not raw.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return SecretStr(raw)


class StageSettings(_Frozen):
    """How one stage runs on Ray. `concurrency` is the runbook's CONCURRENCY: pool actors per stage."""

    consumers: int = Field(default=1, ge=1, le=256, description="consumer actors in the stage's group")
    concurrency: int = Field(default=1, ge=1, le=256, description="stage pool actors")
    group_id: str | None = Field(default=None, description="consumer group; default `<stage>-workers`")
    # One batch at a time per lane: while the pool works, records gather (in the fetch buffer, and in
    # Kafka once the partitions pause) into the next, larger batch. Deeper queues of small batches
    # cost more CPU per event: at 500/s on two cores, p99 7.2 s with 4, 4.3 s with 2, 2.5 s with 1,
    # and 1 sustained the most at 1,000/s offered (docs/benchmarks.md).
    max_in_flight_batches: int = Field(default=1, ge=1, le=1024, description="per consumer and lane: batches the pool has not answered; beyond it partitions pause")
    # A batch has a fixed cost (the Ray call, the transaction's round trips, the produce request):
    # about 2.5 ms of Python and 4 ms of PostgreSQL on two cores. Below saturation batches stay
    # small whatever the cap; a stage that falls behind (at 1,000/s offered, the playbook stage) then
    # catches up in fewer, larger batches: 912-984/s sustained with 1,000 against 786-940/s with 500,
    # run side by side (docs/benchmarks.md). Kafka's max_poll_records (1,000) caps a fetch as well.
    max_batch_events: int = Field(default=1000, ge=1, le=100_000, description="events per Ray call at most")
    actor_num_cpus: float = Field(default=0.1, ge=0, le=64)
    actor_num_gpus: float = Field(default=0, ge=0, le=8)


class StagesSettings(_Frozen):
    intake: StageSettings = StageSettings()
    triage: StageSettings = StageSettings()
    policy: StageSettings = StageSettings()
    playbook: StageSettings = StageSettings()
    tool: StageSettings = StageSettings()
    feedback: StageSettings = StageSettings()

    def for_stage(self, stage: str) -> StageSettings:
        if stage not in STAGE_NAMES:
            raise KeyError(f"unknown stage {stage!r}; stages are {', '.join(STAGE_NAMES)}")
        return getattr(self, stage)

    def group_id(self, stage: str) -> str:
        return self.for_stage(stage).group_id or f"{stage}-workers"


def bundled_broker_partitions(stages: StagesSettings) -> int:
    """Partitions of each topic on the bundled broker when none are configured: enough for every
    consumer of the busiest group to own one."""
    return max(BUNDLED_BROKER_PARTITIONS, *(stages.for_stage(stage).consumers for stage in STAGE_NAMES))


class SlaSettings(_Frozen):
    interval_s: float = Field(default=5.0, gt=0, description="how often the monitor scans open exceptions")
    imminent_fraction: float = Field(default=0.2, gt=0, lt=1, description="SLAImminent when this share of the window is left")
    batch_limit: int = Field(default=1000, ge=1)


class RateLimitSettings(_Frozen):
    """How the intake consumers apply the tenant packs' `rate_limit` (DESIGN.md §5); the limits
    themselves are per tenant, in its pack."""

    refresh_interval_s: float = Field(default=10.0, gt=0, le=3600, description="how often each intake consumer re-reads the tenants' limits")
    max_held_events: int = Field(
        default=10_000, ge=1, le=10_000_000,
        description="per intake consumer: events held back by rate limits at most; beyond it its partitions pause (all tenants wait)",
    )
    report_interval_s: float = Field(default=10.0, gt=0, description="at most one BackpressureDetected per tenant and consumer this often")


class RetryPolicySettings(_Frozen):
    """Backoff for transient errors: base * 2^(n-1) seconds, capped, +/- jitter; then the DLQ."""

    max_retries: int = Field(default=4, ge=0, le=100)
    base_delay_s: float = Field(default=1.0, gt=0, le=3600)
    max_delay_s: float = Field(default=60.0, gt=0, le=86_400)
    jitter_fraction: float = Field(default=0.1, ge=0, le=1)


class RetrySettings(_Frozen):
    """The default policy, overridden per stage, then per error type (most specific wins):
    `SENTINAI_RETRY__STAGES={"tool": {"max_retries": 6}}`,
    `SENTINAI_RETRY__ERROR_TYPES={"rate_limited": {"base_delay_s": 5}}`."""

    default: RetryPolicySettings = RetryPolicySettings()
    stages: dict[str, RetryPolicySettings] = Field(default_factory=dict)
    error_types: dict[str, RetryPolicySettings] = Field(default_factory=dict)
    poll_interval_s: float = Field(default=0.5, gt=0, le=60, description="how often the supervisor looks for due retries")
    redispatch_after_s: float = Field(
        default=120.0, gt=0, description="publish a retry again if its attempt has not run this long after dispatch "
        "(the broker lost it); the stage still runs each attempt once"
    )

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: dict[str, RetryPolicySettings]) -> dict[str, RetryPolicySettings]:
        unknown = sorted(set(stages) - set(STAGE_NAMES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGE_NAMES)}")
        return stages

    def policy_for(self, stage: str, error_type: str) -> RetryPolicySettings:
        return self.error_types.get(error_type) or self.stages.get(stage) or self.default


class OpenAISettings(_Frozen):
    """Any OpenAI-compatible chat-completions endpoint: Ray Serve LLM / vLLM, a llama.cpp server, a hosted API."""

    base_url: str | None = Field(default=None, description="e.g. http://ray-head:8000/llm/v1; required for backend openai")
    model: str = Field(default="triage", description="model id sent in each request")
    api_key: SecretStr | None = None
    response_format: Literal["json_schema", "json_object"] = Field(
        default="json_schema", description="json_schema (OpenAI, vLLM) or json_object+schema (llama-cpp-python)"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="per call")
    max_concurrency: int = Field(default=4, ge=1, le=256, description="calls in flight per model replica")
    breaker_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures that open the circuit")
    breaker_reset_after_s: float = Field(default=30.0, gt=0, description="open circuit: wait this long before a trial call")


class TriagePoolSettings(_Frozen):
    """The autoscaled pool of model replicas (a Ray Serve deployment) that the triage stage calls."""

    min_replicas: int = Field(default=1, ge=0, le=256)
    max_replicas: int = Field(default=4, ge=1, le=256)
    num_cpus: float = Field(default=0.25, ge=0, le=64, description="per replica")
    num_gpus: float = Field(default=0, ge=0, le=8, description="per replica; >0 makes the autoscaler add GPU nodes")
    target_ongoing_requests: float = Field(default=2.0, gt=0, description="chunks in flight per replica before scaling up")
    upscale_delay_s: float = Field(default=3.0, ge=0)
    downscale_delay_s: float = Field(default=15.0, ge=0)
    chunk_size: int = Field(default=32, ge=1, le=4096, description="exceptions per model call")

    @model_validator(mode="after")
    def _bounds(self) -> TriagePoolSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class TriageSettings(_Frozen):
    backend: Literal["embedded", "openai", "rules"] = Field(
        default="embedded", description="embedded (offline model), openai (any compatible LLM) or rules"
    )
    runtime: Literal["onnx", "torch"] = Field(default="onnx", description="embedded model runtime; torch needs the [torch] extra")
    model_threads: int = Field(default=1, ge=1, le=64, description="CPU threads per model replica")
    cache_size: int = Field(default=10_000, ge=0, description="recently seen exception signatures answered from memory")
    rules_shortcut_confidence: float | None = Field(
        default=0.95, ge=0, le=1, description="rules decisions this confident skip the model; unset to always ask it"
    )
    openai: OpenAISettings = OpenAISettings()
    pool: TriagePoolSettings = TriagePoolSettings()

    @model_validator(mode="after")
    def _openai_needs_url(self) -> TriageSettings:
        if self.backend == "openai" and not self.openai.base_url:
            raise ValueError("backend openai needs SENTINAI_TRIAGE__OPENAI__BASE_URL")
        return self


class ToolSettings(_Frozen):
    http_timeout_s: float = Field(default=5.0, gt=0, le=300)
    http_max_response_bytes: int = Field(default=1024 * 1024, ge=1024)


class RaySettings(_Frozen):
    address: str | None = Field(default=None, description="RAY_ADDRESS; unset starts a local Ray")
    namespace: str = Field(default="sentinai", pattern=r"^[A-Za-z0-9_\-]+$")
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of the local Ray; default all")
    include_dashboard: bool = True
    object_store_memory_mb: int = Field(default=512, ge=80)


class ServeSettings(_Frozen):
    """The operations API (Ray Serve, FastAPI ingress)."""

    enabled: bool = Field(default=True, description="deploy the operations API with `sentinai up`")
    host: str = Field(default="127.0.0.1", description="0.0.0.0 to reach it from other machines")
    port: int = Field(default=8000, ge=1, le=65535)
    admin_token: SecretStr | None = Field(default=None, description="bearer token for /api/admin/*; unset disables them")
    public_health: bool = Field(default=True, description="/health answers without credentials")
    public_metrics: bool = Field(default=True, description="/metrics answers without credentials")
    tenant_labels: bool = Field(default=True, description="tenant_id label on metrics; off for many tenants")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    max_batch_items: int = Field(default=1000, ge=1, le=100_000)
    num_replicas: int = Field(default=1, ge=1, le=64)


class Settings(BaseSettings):
    """Everything `sentinai` needs. Build it with `cluster.config.load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="SENTINAI_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    data_dir: Path = Field(default_factory=lambda: default_data_dir(), description="embedded PostgreSQL, broker logs and state")
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024, description="larger events are dead-lettered")
    pack_dir: Path | None = Field(default=None, description="extra domain and tenant packs, loaded after the bundled ones")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_events: bool = Field(
        default=False,
        description="one INFO line per processed event (tenant_id= exception_id= event_id=); retries and "
        "dead-lettering are always logged. Off by default: at thousands of events/s it costs CPU and log volume",
    )
    shutdown_grace_s: float = Field(default=30.0, gt=0)

    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    stages: StagesSettings = StagesSettings()
    sla: SlaSettings = SlaSettings()
    triage: TriageSettings = TriageSettings()
    tools: ToolSettings = ToolSettings()
    retry: RetrySettings = RetrySettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    ray: RaySettings = RaySettings()
    serve: ServeSettings = ServeSettings()

    # The runbook's own variable names, folded into the tree by cluster.config.
    database_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"), exclude=True)
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"), exclude=True
    )
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("RAY_ADDRESS"), exclude=True)

    @field_validator("database_url")
    @classmethod
    def _database_url_driver(cls, url: SecretStr | None) -> SecretStr | None:
        return DatabaseSettings._async_driver(url)

    @model_validator(mode="after")
    def _fold_runbook_variables(self) -> Settings:
        # The runbook's variables win over the SENTINAI_ ones: they are what operators set at 3 a.m.
        if self.database_url is not None:
            object.__setattr__(self, "database", self.database.model_copy(update={"url": self.database_url}))
        if self.kafka_bootstrap_servers:
            object.__setattr__(self, "kafka", self.kafka.model_copy(update={"bootstrap_servers": self.kafka_bootstrap_servers}))
        if self.ray_address:
            object.__setattr__(self, "ray", self.ray.model_copy(update={"address": self.ray_address}))
        return self

    @model_validator(mode="after")
    def _partitions_for_the_bundled_broker(self) -> Settings:
        # Runs after the runbook's variables are folded in: no bootstrap servers means the bundled broker.
        if "partitions" not in self.kafka.model_fields_set and self.kafka.bootstrap_servers is None:
            partitions = bundled_broker_partitions(self.stages)
            object.__setattr__(self, "kafka", self.kafka.model_copy(update={"partitions": partitions}))
        return self
