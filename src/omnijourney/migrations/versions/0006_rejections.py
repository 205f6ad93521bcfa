"""rejections: the messages each source had refused, for its debugger

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 22:10:00
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rejections',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.String(length=32), nullable=False),
    sa.Column('at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('field', sa.String(length=200), nullable=True),
    sa.Column('sample', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rejections', schema=None) as batch_op:
        batch_op.create_index('ix_rejections_source_id', ['source_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rejections', schema=None) as batch_op:
        batch_op.drop_index('ix_rejections_source_id')
    op.drop_table('rejections')
