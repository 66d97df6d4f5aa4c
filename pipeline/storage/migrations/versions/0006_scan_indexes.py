"""indexes that keep the periodic scans proportional to what is due

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

- `exceptions.sla_next_check_at` with a partial index: the SLA monitor's scan computed every open
  exception's imminent time (195-269 ms per scan at 30,000 open exceptions, every 5 s, growing with
  them). Open exceptions are back-filled from their notifications so far, with the default
  imminent fraction of 0.2.
- `event_processing_log`: the `(status, next_retry_at)` index is kept for unfinished events only
  (retrying, failed). Completed events, nearly every row, no longer pay its index insert.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('exceptions', sa.Column(
        'sla_next_check_at', sa.DateTime(timezone=True), nullable=True,
        comment='when the SLA monitor looks next; null: nothing left to watch'))
    op.execute("""
        UPDATE exceptions AS e SET sla_next_check_at = CASE
            WHEN EXISTS (SELECT 1 FROM sla_notifications n WHERE n.tenant_id = e.tenant_id
                         AND n.exception_id = e.exception_id AND n.threshold = 'expired') THEN NULL
            WHEN EXISTS (SELECT 1 FROM sla_notifications n WHERE n.tenant_id = e.tenant_id
                         AND n.exception_id = e.exception_id AND n.threshold = 'imminent') THEN e.sla_deadline
            ELSE e.sla_deadline - (e.sla_deadline - e.created_at) * 0.2
        END
        WHERE e.resolved_at IS NULL AND e.sla_deadline IS NOT NULL
          AND e.status NOT IN ('resolved', 'rejected', 'non_actionable')
    """)
    op.create_index('ix_exceptions_sla_next_check', 'exceptions', ['sla_next_check_at'], unique=False,
                    postgresql_where=sa.text('resolved_at IS NULL AND sla_next_check_at IS NOT NULL'))
    op.drop_index('ix_epl_status_due', table_name='event_processing_log')
    op.create_index('ix_epl_unfinished', 'event_processing_log', ['status', 'next_retry_at'], unique=False,
                    postgresql_where=sa.text("status <> 'completed'"))


def downgrade() -> None:
    op.drop_index('ix_epl_unfinished', table_name='event_processing_log')
    op.create_index('ix_epl_status_due', 'event_processing_log', ['status', 'next_retry_at'], unique=False)
    op.drop_index('ix_exceptions_sla_next_check', table_name='exceptions')
    op.drop_column('exceptions', 'sla_next_check_at')
