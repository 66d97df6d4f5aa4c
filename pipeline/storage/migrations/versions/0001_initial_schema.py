"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dead_letter_queue',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False, comment='raw-<sha256> when the record could not be decoded'),
    sa.Column('event_type', sa.String(length=64), nullable=True),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('exception_id', sa.String(length=128), nullable=True),
    sa.Column('worker_type', sa.String(length=32), nullable=False),
    sa.Column('error_type', sa.String(length=64), nullable=False),
    sa.Column('error_message', sa.Text(), nullable=False),
    sa.Column('retry_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('original_topic', sa.String(length=255), nullable=True),
    sa.Column('original_partition', sa.Integer(), nullable=True),
    sa.Column('original_offset', sa.BigInteger(), nullable=True),
    sa.Column('original_key', sa.LargeBinary(), nullable=True),
    sa.Column('original_value', sa.LargeBinary(), nullable=True, comment="the record's bytes exactly as consumed"),
    sa.Column('original_headers', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='the decoded event, when it decoded'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'worker_type', name='uq_dlq_event_worker')
    )
    op.create_index('ix_dlq_tenant', 'dead_letter_queue', ['tenant_id', 'created_at'], unique=False)
    op.create_table('event_log',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('correlation_id', sa.String(length=128), nullable=False),
    sa.Column('partition_key', sa.String(length=256), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('event_timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('produced_by', sa.String(length=32), nullable=False, comment="stage that emitted it, or 'source'"),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    op.create_index('ix_event_log_exception', 'event_log', ['tenant_id', 'exception_id', 'created_at'], unique=False)
    op.create_table('event_processing_log',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('worker_type', sa.String(length=32), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False, comment='completed, retrying, failed'),
    sa.Column('retry_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error_type', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('next_retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('output_event_ids', sa.ARRAY(sa.String(length=128)), server_default='{}', nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=True),
    sa.Column('partition', sa.Integer(), nullable=True),
    sa.Column('offset', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'worker_type', name='uq_event_processing_event_worker')
    )
    op.create_index('ix_epl_exception', 'event_processing_log', ['tenant_id', 'exception_id'], unique=False)
    op.create_index('ix_epl_status_due', 'event_processing_log', ['status', 'next_retry_at'], unique=False)
    op.create_table('exceptions',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False, comment='open, triaged, in_progress, awaiting_approval, ...'),
    sa.Column('source_system', sa.String(length=128), nullable=True),
    sa.Column('type_hint', sa.String(length=128), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False, comment='normalised, PII redacted'),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exception_type', sa.String(length=64), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('rationale', sa.Text(), nullable=True),
    sa.Column('triage_backend', sa.String(length=32), nullable=True),
    sa.Column('triage_model', sa.String(length=128), nullable=True),
    sa.Column('sla_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('actionable', sa.Boolean(), nullable=True),
    sa.Column('approval_required', sa.Boolean(), nullable=True),
    sa.Column('escalated', sa.Boolean(), nullable=True),
    sa.Column('policy_reasons', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('playbook_id', sa.String(length=64), nullable=True),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'exception_id')
    )
    op.create_index('ix_exceptions_exception_id', 'exceptions', ['exception_id'], unique=False)
    op.create_index('ix_exceptions_open_sla', 'exceptions', ['sla_deadline'], unique=False, postgresql_where=sa.text('resolved_at IS NULL'))
    op.create_index('ix_exceptions_tenant_status', 'exceptions', ['tenant_id', 'status'], unique=False)
    op.create_table('feedback',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False, comment='resolved, escalated, rejected, failed, non_actionable'),
    sa.Column('auto_resolved', sa.Boolean(), nullable=False),
    sa.Column('resolution_time_s', sa.Float(), nullable=True),
    sa.Column('exception_type', sa.String(length=64), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=True),
    sa.Column('playbook_id', sa.String(length=64), nullable=True),
    sa.Column('tool_outcomes', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'exception_id')
    )
    op.create_table('playbook_runs',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('playbook_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False, comment='running, waiting_tool, awaiting_approval, completed, rejected, failed'),
    sa.Column('next_step', sa.Integer(), nullable=False, comment='index of the next step to run'),
    sa.Column('approval_required', sa.Boolean(), nullable=False),
    sa.Column('approved', sa.Boolean(), nullable=True),
    sa.Column('step_results', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'exception_id')
    )
    op.create_table('sla_notifications',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('threshold', sa.String(length=16), nullable=False, comment='imminent or expired'),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('published', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('emitted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'exception_id', 'threshold')
    )
    op.create_table('tenants',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.Column('domain_version', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('pack', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='the tenant pack as loaded'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id')
    )
    op.create_table('tool_executions',
    sa.Column('execution_id', sa.String(length=128), nullable=False, comment='= the ToolExecutionRequested event id'),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('exception_id', sa.String(length=128), nullable=False),
    sa.Column('playbook_id', sa.String(length=64), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('tool_name', sa.String(length=64), nullable=False),
    sa.Column('tool_kind', sa.String(length=16), nullable=False),
    sa.Column('input', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False, comment='succeeded, failed, rejected'),
    sa.Column('error_type', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('executed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('execution_id')
    )
    op.create_index('ix_tool_executions_exception', 'tool_executions', ['tenant_id', 'exception_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tool_executions_exception', table_name='tool_executions')
    op.drop_table('tool_executions')
    op.drop_table('tenants')
    op.drop_table('sla_notifications')
    op.drop_table('playbook_runs')
    op.drop_table('feedback')
    op.drop_index('ix_exceptions_tenant_status', table_name='exceptions')
    op.drop_index('ix_exceptions_open_sla', table_name='exceptions', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_index('ix_exceptions_exception_id', table_name='exceptions')
    op.drop_table('exceptions')
    op.drop_index('ix_epl_status_due', table_name='event_processing_log')
    op.drop_index('ix_epl_exception', table_name='event_processing_log')
    op.drop_table('event_processing_log')
    op.drop_index('ix_event_log_exception', table_name='event_log')
    op.drop_table('event_log')
    op.drop_index('ix_dlq_tenant', table_name='dead_letter_queue')
    op.drop_table('dead_letter_queue')
