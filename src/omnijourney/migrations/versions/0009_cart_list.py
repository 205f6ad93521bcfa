"""carts: listed most recently changed first

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 04:10:00
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_carts_updated', 'carts', ['updated_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_carts_updated', table_name='carts')
