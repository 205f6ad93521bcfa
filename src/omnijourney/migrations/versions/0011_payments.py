"""payments: payments and their operation log, gift cards and their ledger

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 06:09:27.619735
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types
from sqlalchemy import Text  # noqa: F401
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gift_cards',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('initial_minor', sa.BigInteger(), nullable=False),
    sa.Column('balance_minor', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('expires_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('balance_minor >= 0', name='ck_gift_cards_balance'),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('payments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('instrument', sa.String(length=200), nullable=True),
    sa.Column('brand', sa.String(length=32), nullable=True),
    sa.Column('last4', sa.String(length=4), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('authorised_minor', sa.BigInteger(), nullable=False),
    sa.Column('captured_minor', sa.BigInteger(), nullable=False),
    sa.Column('refunded_minor', sa.BigInteger(), nullable=False),
    sa.Column('refund_pending_minor', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_ref', sa.String(length=100), nullable=True),
    sa.Column('decline_code', sa.String(length=100), nullable=True),
    sa.Column('decline_reason', sa.String(length=500), nullable=True),
    sa.Column('next_action_url', sa.String(length=2000), nullable=True),
    sa.Column('void_requested_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('captured_minor - refunded_minor - refund_pending_minor >= 0', name='ck_payments_refundable'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_order', ['order_id'], unique=False)
        batch_op.create_index('ix_payments_provider_ref', ['provider', 'provider_ref'], unique=False)
        batch_op.create_index('ix_payments_ref', ['ref', 'position'], unique=False)

    op.create_table('gift_card_movements',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('balance_change', sa.BigInteger(), nullable=False),
    sa.Column('hold_id', sa.String(length=32), nullable=True),
    sa.Column('payment_id', sa.String(length=32), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['code'], ['gift_cards.code'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gift_card_movements', schema=None) as batch_op:
        batch_op.create_index('ix_gift_card_movements_card', ['code', 'created_at'], unique=False)
        batch_op.create_index('ix_gift_card_movements_hold', ['hold_id'], unique=False)
        batch_op.create_index('ux_gift_card_movements_key', ['idempotency_key'], unique=True)

    op.create_table('payment_operations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_id', sa.String(length=32), nullable=True),
    sa.Column('reference', sa.String(length=200), nullable=True),
    sa.Column('provider_ref', sa.String(length=100), nullable=True),
    sa.Column('code', sa.String(length=100), nullable=True),
    sa.Column('message', sa.String(length=1000), nullable=True),
    sa.Column('event_id', sa.String(length=200), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', omnijourney.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment_operations', schema=None) as batch_op:
        batch_op.create_index('ix_payment_operations_payment', ['payment_id', 'created_at'], unique=False)
        batch_op.create_index('ix_payment_operations_reference', ['reference'], unique=False)
        batch_op.create_index('ix_payment_operations_request', ['request_id'], unique=False)
        batch_op.create_index('ux_payment_operations_event', ['event_id'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('payment_operations', schema=None) as batch_op:
        batch_op.drop_index('ux_payment_operations_event')
        batch_op.drop_index('ix_payment_operations_request')
        batch_op.drop_index('ix_payment_operations_reference')
        batch_op.drop_index('ix_payment_operations_payment')

    op.drop_table('payment_operations')
    with op.batch_alter_table('gift_card_movements', schema=None) as batch_op:
        batch_op.drop_index('ux_gift_card_movements_key')
        batch_op.drop_index('ix_gift_card_movements_hold')
        batch_op.drop_index('ix_gift_card_movements_card')

    op.drop_table('gift_card_movements')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_ref')
        batch_op.drop_index('ix_payments_provider_ref')
        batch_op.drop_index('ix_payments_order')

    op.drop_table('payments')
    op.drop_table('gift_cards')
