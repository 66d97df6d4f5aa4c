"""dlq replays

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dlq_replays',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('dlq_id', sa.BigInteger(), nullable=False, comment='the dead_letter_queue row it replayed'),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('worker_type', sa.String(length=32), nullable=False),
    sa.Column('error_type', sa.String(length=64), nullable=False),
    sa.Column('target_topic', sa.String(length=255), nullable=False),
    sa.Column('original_key', sa.LargeBinary(), nullable=True),
    sa.Column('original_value', sa.LargeBinary(), nullable=True),
    sa.Column('original_headers', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('entry', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='the dead_letter_queue row as it was (bytes left out)'),
    sa.Column('replayed_by', sa.String(length=128), nullable=False),
    sa.Column('replayed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True, comment='null until the event is back on its topic'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dlq_id')
    )
    op.create_index('ix_dlq_replays_unpublished', 'dlq_replays', ['published_at'], unique=False, postgresql_where=sa.text('published_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_dlq_replays_unpublished', table_name='dlq_replays', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('dlq_replays')
