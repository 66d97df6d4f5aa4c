"""The PostgreSQL schema, as SQLAlchemy Core tables. Alembic migrations create it (`sentinai migrate`).

Table and column names are contracts: the operations runbook queries `exceptions`, `event_log`,
`event_processing_log` and `dead_letter_queue` verbatim. Every domain table carries `tenant_id`.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

BATCH_UNIFORM = "batch_uniform"
"""`Column.info` key: the column usually holds one value in every row a batch writes (a status, the
batch's timestamp, a column not filled yet). `pipeline.storage.bulk` then sends that value once.
Never on a JSON column: 1 and true are equal in Python but not in JSON."""
_UNIFORM = {BATCH_UNIFORM: True}


def _now_column(name: str) -> Column:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now(), info=_UNIFORM)


tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("domain", String(64), nullable=False),
    Column("domain_version", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("pack", JSONB, nullable=False, comment="the tenant pack as loaded"),
    _now_column("created_at"),
    _now_column("updated_at"),
)

exceptions = Table(
    "exceptions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("status", String(32), nullable=False, comment="open, triaged, in_progress, awaiting_approval, ...", info=_UNIFORM),
    Column("source_system", String(128)),
    Column("type_hint", String(128)),
    Column("description", Text),
    Column("attributes", JSONB, nullable=False, server_default="{}", comment="normalised, PII redacted"),
    Column("occurred_at", DateTime(timezone=True)),
    Column("exception_type", String(64), info=_UNIFORM),
    Column("severity", String(16), info=_UNIFORM),
    Column("confidence", Float, info=_UNIFORM),
    Column("rationale", Text, info=_UNIFORM),
    Column("triage_backend", String(32), info=_UNIFORM),
    Column("triage_model", String(128), info=_UNIFORM),
    Column("sla_deadline", DateTime(timezone=True), info=_UNIFORM),
    Column("sla_next_check_at", DateTime(timezone=True), comment="when the SLA monitor looks next; null: nothing left to watch", info=_UNIFORM),
    Column("actionable", Boolean, info=_UNIFORM),
    Column("approval_required", Boolean, info=_UNIFORM),
    Column("escalated", Boolean, info=_UNIFORM),
    Column("policy_reasons", JSONB),
    Column("playbook_id", String(64), info=_UNIFORM),
    Column("owner", String(128), info=_UNIFORM),
    Column("resolved_at", DateTime(timezone=True), info=_UNIFORM),
    _now_column("created_at"),
    _now_column("updated_at"),
    PrimaryKeyConstraint("tenant_id", "exception_id"),
)
Index("ix_exceptions_exception_id", exceptions.c.exception_id)
Index("ix_exceptions_tenant_status", exceptions.c.tenant_id, exceptions.c.status)
Index(
    "ix_exceptions_sla_next_check",
    exceptions.c.sla_next_check_at,
    postgresql_where=and_(exceptions.c.resolved_at.is_(None), exceptions.c.sla_next_check_at.isnot(None)),
)

event_log = Table(
    "event_log",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("event_type", String(64), nullable=False, info=_UNIFORM),
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("correlation_id", String(128), nullable=False),
    Column("partition_key", String(256), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("version", Integer, nullable=False, info=_UNIFORM),
    Column("event_timestamp", DateTime(timezone=True), nullable=False, info=_UNIFORM),
    Column("produced_by", String(32), nullable=False, comment="stage that emitted it, or 'source'", info=_UNIFORM),
    _now_column("created_at"),
)
Index("ix_event_log_exception", event_log.c.tenant_id, event_log.c.exception_id, event_log.c.created_at)

event_processing_log = Table(
    "event_processing_log",
    metadata,
    # Numbered by its sequence, in the order rows were first written; no index (migration 0010):
    # every statement finds a row by its key, (event_id, worker_type).
    Column("id", BigInteger, nullable=False, server_default=text("nextval('event_processing_log_id_seq'::regclass)")),
    Column("event_id", String(128), nullable=False),
    Column("worker_type", String(32), nullable=False, info=_UNIFORM),
    Column("event_type", String(64), nullable=False, info=_UNIFORM),
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("status", String(16), nullable=False, comment="completed, retrying, failed", info=_UNIFORM),
    Column("retry_count", Integer, nullable=False, server_default="0", info=_UNIFORM),
    Column("error_type", String(64), info=_UNIFORM),
    Column("error_message", Text, info=_UNIFORM),
    Column("next_retry_at", DateTime(timezone=True), info=_UNIFORM),
    Column("last_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now(), info=_UNIFORM),
    Column("duration_ms", Float),
    Column("output_event_ids", ARRAY(String(128)), nullable=False, server_default="{}"),
    Column("topic", String(255), info=_UNIFORM),
    Column("partition", Integer),
    Column("offset", BigInteger),
    _now_column("created_at"),
    Column("completed_at", DateTime(timezone=True), info=_UNIFORM),
    UniqueConstraint("event_id", "worker_type", name="uq_event_processing_event_worker"),
)
# Only events not completed: the retry scan and the runbook's retrying / failed queries read these,
# and completed events (nearly every row) skip the index insert.
Index("ix_epl_unfinished", event_processing_log.c.status, event_processing_log.c.next_retry_at,
      postgresql_where=event_processing_log.c.status != "completed")

dead_letter_queue = Table(
    "dead_letter_queue",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, comment="raw-<sha256> when the record could not be decoded"),
    Column("event_type", String(64)),
    Column("tenant_id", String(64)),
    Column("exception_id", String(128)),
    Column("worker_type", String(32), nullable=False),
    Column("error_type", String(64), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("original_topic", String(255)),
    Column("original_partition", Integer),
    Column("original_offset", BigInteger),
    Column("original_key", LargeBinary),
    Column("original_value", LargeBinary, comment="the record's bytes exactly as consumed"),
    Column("original_headers", JSONB, nullable=False, server_default="[]"),
    Column("payload", JSONB, comment="the decoded event, when it decoded"),
    _now_column("created_at"),
    UniqueConstraint("event_id", "worker_type", name="uq_dlq_event_worker"),
)
Index("ix_dlq_tenant", dead_letter_queue.c.tenant_id, dead_letter_queue.c.created_at)

tool_executions = Table(
    "tool_executions",
    metadata,
    Column("execution_id", String(128), primary_key=True, comment="= the ToolExecutionRequested event id"),
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("playbook_id", String(64), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("tool_name", String(64), nullable=False),
    Column("tool_kind", String(16), nullable=False, info=_UNIFORM),
    Column("input", JSONB, nullable=False),
    Column("output", JSONB),
    Column("outcome", String(16), nullable=False, comment="succeeded, failed, rejected", info=_UNIFORM),
    Column("error_type", String(64), info=_UNIFORM),
    Column("error_message", Text, info=_UNIFORM),
    Column("duration_ms", Float, nullable=False),
    _now_column("executed_at"),
)
Index("ix_tool_executions_exception", tool_executions.c.tenant_id, tool_executions.c.exception_id)

playbook_runs = Table(
    "playbook_runs",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("playbook_id", String(64), nullable=False),
    Column("status", String(24), nullable=False, comment="running, waiting_tool, awaiting_approval, completed, rejected, failed", info=_UNIFORM),
    Column("next_step", Integer, nullable=False, comment="index of the next step to run"),
    Column("approval_required", Boolean, nullable=False, info=_UNIFORM),
    Column("approved", Boolean, info=_UNIFORM),
    Column("step_results", JSONB, nullable=False, server_default="[]"),
    _now_column("started_at"),
    _now_column("updated_at"),
    Column("completed_at", DateTime(timezone=True), info=_UNIFORM),
    PrimaryKeyConstraint("tenant_id", "exception_id"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("outcome", String(24), nullable=False, comment="resolved, escalated, rejected, failed, non_actionable", info=_UNIFORM),
    Column("auto_resolved", Boolean, nullable=False, info=_UNIFORM),
    Column("resolution_time_s", Float),
    Column("exception_type", String(64)),
    Column("severity", String(16)),
    Column("playbook_id", String(64)),
    Column("tool_outcomes", JSONB, nullable=False, server_default="{}"),
    _now_column("recorded_at"),
    PrimaryKeyConstraint("tenant_id", "exception_id"),
)

sla_notifications = Table(
    "sla_notifications",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("exception_id", String(128), nullable=False),
    Column("threshold", String(16), nullable=False, comment="imminent or expired"),
    Column("event_id", String(128), nullable=False),
    Column("published", Boolean, nullable=False, server_default="false"),
    _now_column("emitted_at"),
    PrimaryKeyConstraint("tenant_id", "exception_id", "threshold"),
)

dlq_replays = Table(
    "dlq_replays",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dlq_id", BigInteger, nullable=False, unique=True, comment="the dead_letter_queue row it replayed"),
    Column("event_id", String(128), nullable=False),
    Column("tenant_id", String(64)),
    Column("worker_type", String(32), nullable=False),
    Column("error_type", String(64), nullable=False),
    Column("target_topic", String(255), nullable=False),
    Column("original_key", LargeBinary),
    Column("original_value", LargeBinary),
    Column("original_headers", JSONB, nullable=False, server_default="[]"),
    Column("entry", JSONB, nullable=False, comment="the dead_letter_queue row as it was (bytes left out)"),
    Column("replayed_by", String(128), nullable=False),
    _now_column("replayed_at"),
    Column("published_at", DateTime(timezone=True), comment="null until the event is back on its topic"),
)
Index("ix_dlq_replays_unpublished", dlq_replays.c.published_at, postgresql_where=dlq_replays.c.published_at.is_(None))

# Prometheus counters, kept in the database and updated in each batch's own transaction: exact
# across every actor on every node, never going backwards when an actor restarts, and never counting
# an event twice when a batch is retried. Labels that do not apply are ''.
metric_counters = Table(
    "metric_counters",
    metadata,
    Column("name", String(64), nullable=False),
    Column("worker_type", String(32), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("error_type", String(64), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "worker_type", "event_type", "tenant_id", "status", "error_type"),
)

latency_histogram = Table(
    "latency_histogram",
    metadata,
    Column("worker_type", String(32), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("le", Float, nullable=False, comment="bucket upper bound in seconds; Infinity for +Inf"),
    Column("count", BigInteger, nullable=False),
    Column("sum_seconds", Float, nullable=False, comment="sum of all observations, on the +Inf row only (0 elsewhere)"),
    PrimaryKeyConstraint("worker_type", "event_type", "le"),
)

# Per-tenant API keys for the operations API. Only the SHA-256 of a key is stored: keys are 32 random
# bytes, so a plain hash is enough (no salt or slow hash needed against guessing).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True, comment="public id, shown by `sentinai tenant list`"),
    Column("tenant_id", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True, comment="hex SHA-256 of the key"),
    Column("label", Text),
    _now_column("created_at"),
    Column("revoked_at", DateTime(timezone=True), comment="null while the key is valid"),
)
Index("ix_api_keys_tenant", api_keys.c.tenant_id)
