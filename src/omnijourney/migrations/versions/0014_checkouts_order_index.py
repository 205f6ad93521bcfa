"""checkouts: an index on order_id (an order's checkout is looked up by its order)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 08:00:00.000000
"""

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_checkouts_order', 'checkouts', ['order_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_checkouts_order', table_name='checkouts')
