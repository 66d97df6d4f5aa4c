"""drop `ix_exceptions_open_sla`, an index no query reads any more

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

The SLA monitor scanned open exceptions by `sla_deadline` through this index until migration 0006
gave it `sla_next_check_at` and its own partial index. Since then nothing reads it: the API lists a
tenant's exceptions by `created_at`, the runbook looks one up by `exception_id`. Yet every exception
row version with `resolved_at IS NULL` had an entry: each stage's update of an exception changes
`status`, which `ix_exceptions_tenant_status` indexes, so no update is HOT, and every one of the four
or five updates per exception inserted into this index too.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_exceptions_open_sla', table_name='exceptions', postgresql_where=sa.text('resolved_at IS NULL'))


def downgrade() -> None:
    op.create_index('ix_exceptions_open_sla', 'exceptions', ['sla_deadline'], unique=False,
                    postgresql_where=sa.text('resolved_at IS NULL'))
