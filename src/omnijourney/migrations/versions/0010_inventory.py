"""inventory: locations, stock levels, ledger, reservations, transfers

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 06:00:47.957498
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types
from sqlalchemy import Text  # noqa: F401


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reservations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=True),
    sa.Column('expires_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.create_index('ix_reservations_ref', ['ref'], unique=False)

    op.create_table('stock_movements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('on_hand_delta', sa.Integer(), nullable=False),
    sa.Column('reserved_delta', sa.Integer(), nullable=False),
    sa.Column('counted', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('ref', sa.String(length=64), nullable=True),
    sa.Column('channel_code', sa.String(length=64), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.create_index('ix_stock_movements_level', ['sku', 'location_code', 'id'], unique=False)
        batch_op.create_index('ix_stock_movements_ref', ['ref'], unique=False)

    op.create_table('locations',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=True),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('online_floor', sa.Integer(), nullable=False),
    sa.Column('ships', sa.Boolean(), nullable=False),
    sa.Column('pickup', sa.Boolean(), nullable=False),
    sa.Column('handling_hours', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], ),
    sa.PrimaryKeyConstraint('code'),
    sa.UniqueConstraint('channel_code')
    )
    op.create_table('reservation_lines',
    sa.Column('reservation_id', sa.String(length=32), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('reservation_id', 'sku', 'location_code')
    )
    op.create_table('location_feeds',
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], ),
    sa.ForeignKeyConstraint(['location_code'], ['locations.code'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('location_code', 'channel_code')
    )
    with op.batch_alter_table('location_feeds', schema=None) as batch_op:
        batch_op.create_index('ix_location_feeds_channel', ['channel_code'], unique=False)

    op.create_table('stock_levels',
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('on_hand', sa.Integer(), nullable=False),
    sa.Column('reserved', sa.Integer(), nullable=False),
    sa.Column('safety_stock', sa.Integer(), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('on_hand >= 0', name='ck_stock_levels_on_hand'),
    sa.CheckConstraint('reserved >= 0 AND reserved <= on_hand', name='ck_stock_levels_reserved'),
    sa.CheckConstraint('safety_stock >= 0', name='ck_stock_levels_safety'),
    sa.ForeignKeyConstraint(['location_code'], ['locations.code'], ),
    sa.ForeignKeyConstraint(['sku'], ['variants.sku'], ),
    sa.PrimaryKeyConstraint('sku', 'location_code')
    )
    with op.batch_alter_table('stock_levels', schema=None) as batch_op:
        batch_op.create_index('ix_stock_levels_location', ['location_code', 'sku'], unique=False)

    op.create_table('stock_transfers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('from_code', sa.String(length=64), nullable=False),
    sa.Column('to_code', sa.String(length=64), nullable=False),
    sa.Column('via_code', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('shipped_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['from_code'], ['locations.code'], ),
    sa.ForeignKeyConstraint(['sku'], ['variants.sku'], ),
    sa.ForeignKeyConstraint(['to_code'], ['locations.code'], ),
    sa.ForeignKeyConstraint(['via_code'], ['locations.code'], ),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('stock_transfers')
    with op.batch_alter_table('stock_levels', schema=None) as batch_op:
        batch_op.drop_index('ix_stock_levels_location')

    op.drop_table('stock_levels')
    with op.batch_alter_table('location_feeds', schema=None) as batch_op:
        batch_op.drop_index('ix_location_feeds_channel')

    op.drop_table('location_feeds')
    op.drop_table('reservation_lines')
    op.drop_table('locations')
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_index('ix_stock_movements_ref')
        batch_op.drop_index('ix_stock_movements_level')

    op.drop_table('stock_movements')
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_reservations_ref')

    op.drop_table('reservations')
