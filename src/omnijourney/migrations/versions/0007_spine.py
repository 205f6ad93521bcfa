"""the spine: background jobs, idempotent requests, the event feed's transaction ids

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 03:20:00
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
UTC = omnijourney.core.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', BigIntPK, autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=100), nullable=False),
    sa.Column('args', JSONType, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_at', UTC, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('unique_key', sa.String(length=200), nullable=True),
    sa.Column('locked_by', sa.String(length=64), nullable=True),
    sa.Column('locked_at', UTC, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_jobs_due', 'jobs', ['status', 'run_at', 'id'])
    op.create_index('ux_jobs_unique_key', 'jobs', ['unique_key'], unique=True)
    op.create_table('idempotent_requests',
    sa.Column('scope', sa.String(length=300), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('body', JSONType, nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key')
    )
    op.create_index('ix_idempotent_requests_created_at', 'idempotent_requests', ['created_at'])
    # The event feed (tracking.feed) orders by the writing transaction: every new row takes its id. Added with a
    # constant default first (no table rewrite; older rows read 0), then the per-row default for new rows. A BRIN
    # index: nearly free to keep up on the hottest insert path, and the feed only ever asks for the recent band.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE events ADD COLUMN txid bigint DEFAULT 0")
        op.execute("ALTER TABLE events ALTER COLUMN txid SET DEFAULT txid_current()")
        op.execute("CREATE INDEX ix_events_txid ON events USING brin (txid)")
    else:
        op.add_column('events', sa.Column('txid', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX ix_events_txid")
    with op.batch_alter_table('events') as batch_op:
        batch_op.drop_column('txid')
    op.drop_table('idempotent_requests')
    op.drop_index('ux_jobs_unique_key', table_name='jobs')
    op.drop_index('ix_jobs_due', table_name='jobs')
    op.drop_table('jobs')
