"""staff: accounts with roles, and their login sessions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types
from sqlalchemy import Text  # noqa: F401
from sqlalchemy.dialects import postgresql

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('stores', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_login_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('password_changed_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('staff_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_sessions_staff_id'), ['staff_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_staff_id'))
        batch_op.drop_index(batch_op.f('ix_staff_sessions_expires_at'))

    op.drop_table('staff_sessions')
    op.drop_table('staff')
