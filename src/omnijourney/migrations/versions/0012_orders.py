"""orders: checkouts, orders, their lines, shipments and history, returns

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 06:10:58.391850
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types
from sqlalchemy import Text  # noqa: F401
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('orders',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=True),
    sa.Column('anonymous_id', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('channel_code', sa.String(length=64), nullable=False),
    sa.Column('cart_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('payment_status', sa.String(length=24), nullable=False),
    sa.Column('fulfilment', sa.String(length=24), nullable=False),
    sa.Column('pickup_location', sa.String(length=64), nullable=True),
    sa.Column('pickup_code', sa.String(length=16), nullable=True),
    sa.Column('pickup_deadline', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ship_to', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('shipping', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('tax', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('refunded', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('vouchers', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('promotions', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('sourcing', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('reservation_id', sa.String(length=32), nullable=True),
    sa.Column('placed_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer', ['customer_id', 'placed_at'], unique=False)
        batch_op.create_index('ix_orders_pickup_code', ['pickup_code'], unique=True)
        batch_op.create_index('ix_orders_placed', ['placed_at', 'id'], unique=False)

    op.create_table('checkouts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('cart_id', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=False),
    sa.Column('reservation_id', sa.String(length=32), nullable=True),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('plan', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('answer', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('answer_status', sa.Integer(), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cart_id'], ['carts.id'], ),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cart_id', 'idempotency_key', name='uq_checkouts_key')
    )
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.create_index('ux_checkouts_open', ['cart_id'], unique=True, sqlite_where=sa.text("status IN ('reserved', 'paying')"), postgresql_where=sa.text("status IN ('reserved', 'paying')"))

    op.create_table('order_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=24), nullable=True),
    sa.Column('to_status', sa.String(length=24), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('order_history', schema=None) as batch_op:
        batch_op.create_index('ix_order_history_order', ['order_id', 'id'], unique=False)

    op.create_table('order_lines',
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('returned', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sku'], ['variants.sku'], ),
    sa.PrimaryKeyConstraint('order_id', 'sku')
    )
    op.create_table('returns',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('channel_code', sa.String(length=64), nullable=False),
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('lines', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('refund_amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('exchange_order_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_code'], ['channels.code'], ),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.create_index('ix_returns_order', ['order_id'], unique=False)

    op.create_table('shipments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('location_code', sa.String(length=64), nullable=False),
    sa.Column('to_location', sa.String(length=64), nullable=True),
    sa.Column('lines', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('carrier', sa.String(length=64), nullable=True),
    sa.Column('tracking', sa.String(length=128), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.create_index('ix_shipments_location', ['location_code', 'status'], unique=False)
        batch_op.create_index('ix_shipments_order', ['order_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.drop_index('ix_shipments_order')
        batch_op.drop_index('ix_shipments_location')

    op.drop_table('shipments')
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.drop_index('ix_returns_order')

    op.drop_table('returns')
    op.drop_table('order_lines')
    with op.batch_alter_table('order_history', schema=None) as batch_op:
        batch_op.drop_index('ix_order_history_order')

    op.drop_table('order_history')
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_index('ux_checkouts_open', sqlite_where=sa.text("status IN ('reserved', 'paying')"), postgresql_where=sa.text("status IN ('reserved', 'paying')"))

    op.drop_table('checkouts')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_placed')
        batch_op.drop_index('ix_orders_pickup_code')
        batch_op.drop_index('ix_orders_customer')

    op.drop_table('orders')
