"""a check that aborts a batch's write statement when another worker recorded its events first

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

A stage batch writes all its effects in one statement (`pipeline.storage.bulk.WriteBatch`), outside
any explicit transaction: a statement is atomic by itself, and the BEGIN and COMMIT round trips were
two of a batch's five. The statement's last write claims the batch's events in
`event_processing_log`; if another worker recorded one of them first (a rebalance), none of the
batch's effects may stay. `sentinai_require_rows` raises inside the statement when the claim wrote
fewer rows than expected, so PostgreSQL rolls the whole statement back. SQLSTATE 40S01 (class 40,
transaction rollback) tells the caller to re-run the batch.
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION sentinai_require_rows(written bigint, expected bigint) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF written <> expected THEN
                RAISE EXCEPTION 'wrote % of % rows: another worker recorded the others first', written, expected
                    USING ERRCODE = '40S01';
            END IF;
            RETURN written;
        END
        $$
    """)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS sentinai_require_rows(bigint, bigint)")
