"""cheaper autovacuum on the tables every batch writes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Autovacuum used 12 % of a core at 1,000 exceptions/s offered (a quarter of PostgreSQL's CPU),
mostly ANALYZE: migration 0005 analyses the hot tables after 2 % change, and each ANALYZE also
built statistics for the wide JSON and text columns that no query ever filters on. Those columns
now have no statistics (`SET STATISTICS 0`; the planner never needs them), and the append-only
logs are analysed after 5 % change. `exceptions` and `playbook_runs` keep 2 %: their key lookups
are the ones stale statistics once sent to the wrong index (see 0005).
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_UNFILTERED_COLUMNS = {
    "event_log": ("payload", "metadata"),
    "event_processing_log": ("error_message", "output_event_ids"),
    "exceptions": ("description", "attributes", "rationale", "policy_reasons"),
    "playbook_runs": ("step_results",),
    "tool_executions": ("input", "output", "error_message"),
}
_APPEND_ONLY_LOGS = ("event_log", "event_processing_log", "tool_executions")


def upgrade() -> None:
    for table, columns in _UNFILTERED_COLUMNS.items():
        alterations = ", ".join(f"ALTER COLUMN {column} SET STATISTICS 0" for column in columns)
        op.execute(f"ALTER TABLE {table} {alterations}")
    for table in _APPEND_ONLY_LOGS:
        op.execute(f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0.05)")


def downgrade() -> None:
    for table in _APPEND_ONLY_LOGS:
        op.execute(f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0.02)")
    for table, columns in _UNFILTERED_COLUMNS.items():
        alterations = ", ".join(f"ALTER COLUMN {column} SET STATISTICS -1" for column in columns)
        op.execute(f"ALTER TABLE {table} {alterations}")
