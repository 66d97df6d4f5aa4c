"""metrics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('latency_histogram',
    sa.Column('worker_type', sa.String(length=32), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('le', sa.Float(), nullable=False, comment='bucket upper bound in seconds; Infinity for +Inf'),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('sum_seconds', sa.Float(), nullable=False, comment='sum of all observations, on the +Inf row only (0 elsewhere)'),
    sa.PrimaryKeyConstraint('worker_type', 'event_type', 'le')
    )
    op.create_table('metric_counters',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('worker_type', sa.String(length=32), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('error_type', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'worker_type', 'event_type', 'tenant_id', 'status', 'error_type')
    )


def downgrade() -> None:
    op.drop_table('metric_counters')
    op.drop_table('latency_histogram')
