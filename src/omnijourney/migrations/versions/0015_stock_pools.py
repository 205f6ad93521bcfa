"""stock_pools: pool rows that spread a hot level's reservations over several row locks

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from omnijourney.core.types import UTCDateTime

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stock_pools',
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('location_code', sa.String(length=64), nullable=False),
        sa.Column('slot', sa.Integer(), nullable=False),
        sa.Column('units', sa.Integer(), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('units >= 0', name='ck_stock_pools_units'),
        sa.PrimaryKeyConstraint('sku', 'location_code', 'slot'),
    )


def downgrade() -> None:
    op.drop_table('stock_pools')
