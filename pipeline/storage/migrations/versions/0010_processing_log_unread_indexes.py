"""drop the two indexes of `event_processing_log` that no statement of the pipeline reads

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

Every event a stage handles writes one row here, about six per exception, and each row paid an
entry in three indexes. Two of them only cost:

- `event_processing_log_pkey`, on `id`: every statement finds a row by `(event_id, worker_type)`,
  whose unique constraint stays the table's key (and its replica identity, for logical decoding).
  `id` stays as a column, numbered by its sequence as before.
- `ix_epl_exception`, on `(tenant_id, exception_id)`: only the trace endpoint read it. The trace now
  finds an exception's processing rows through its events' ids (`event_log`) and its dead letters'.

`stage_cost` (10,000 exceptions, seven alternating pairs) measured 405 against 433 µs of PostgreSQL's
CPU per exception on average without them, less in six pairs of seven.
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_epl_exception', table_name='event_processing_log')
    op.drop_constraint('event_processing_log_pkey', 'event_processing_log', type_='primary')
    op.execute("ALTER TABLE event_processing_log REPLICA IDENTITY USING INDEX uq_event_processing_event_worker")


def downgrade() -> None:
    op.execute("ALTER TABLE event_processing_log REPLICA IDENTITY DEFAULT")
    op.create_primary_key('event_processing_log_pkey', 'event_processing_log', ['id'])
    op.create_index('ix_epl_exception', 'event_processing_log', ['tenant_id', 'exception_id'], unique=False)
