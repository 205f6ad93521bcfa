"""orders: an index on a guest's email (a guest's orders are found by the email given at checkout)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_orders_guest_email', 'orders', ['email', 'placed_at'], unique=False,
                    sqlite_where=sa.text('customer_id IS NULL'), postgresql_where=sa.text('customer_id IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_orders_guest_email', table_name='orders')
