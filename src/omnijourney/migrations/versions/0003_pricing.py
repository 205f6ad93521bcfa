"""pricing: price lists and entries, tax markets and rates, promotions, vouchers, redemptions

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa
import omnijourney.core.types
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
UTC = omnijourney.core.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "price_lists",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel_codes", JSON, nullable=False),
        sa.Column("channel_types", JSON, nullable=False),
        sa.Column("segments", JSON, nullable=False),
        sa.Column("valid_from", UTC, nullable=True),
        sa.Column("valid_to", UTC, nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("prices_include_tax", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "price_list_entries",
        sa.Column("price_list_code", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["price_list_code"], ["price_lists.code"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("price_list_code", "sku"),
    )
    with op.batch_alter_table("price_list_entries", schema=None) as batch_op:
        batch_op.create_index("ix_price_list_entries_sku", ["sku"], unique=False)

    op.create_table(
        "tax_markets",
        sa.Column("market", sa.String(length=8), nullable=False),
        sa.Column("taxes_included", sa.Boolean(), nullable=False),
        sa.Column("shipping_fees", JSON, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("market"),
    )
    op.create_table(
        "tax_rates",
        sa.Column("market", sa.String(length=8), nullable=False),
        sa.Column("tax_class", sa.String(length=32), nullable=False),
        sa.Column("rate_ppm", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["market"], ["tax_markets.market"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("market", "tax_class"),
    )
    op.create_table(
        "promotions",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rule", JSON, nullable=False),
        sa.Column("target", JSON, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("stacking_group", sa.String(length=64), nullable=True),
        sa.Column("valid_from", UTC, nullable=True),
        sa.Column("valid_to", UTC, nullable=True),
        sa.Column("channel_codes", JSON, nullable=False),
        sa.Column("channel_types", JSON, nullable=False),
        sa.Column("segments", JSON, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("min_basket_minor", sa.BigInteger(), nullable=True),
        sa.Column("needs_voucher", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promotions_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "vouchers",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("promotion_code", sa.String(length=64), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("per_customer_limit", sa.Integer(), nullable=True),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("valid_from", UTC, nullable=True),
        sa.Column("valid_to", UTC, nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["promotion_code"], ["promotions.code"]),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("vouchers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vouchers_promotion_code"), ["promotion_code"], unique=False)

    op.create_table(
        "voucher_redemptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("voucher_code", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["voucher_code"], ["vouchers.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("voucher_code", "order_ref", name="uq_voucher_redemptions_order"),
    )
    with op.batch_alter_table("voucher_redemptions", schema=None) as batch_op:
        batch_op.create_index("ix_voucher_redemptions_customer", ["voucher_code", "customer_id"], unique=False)


def downgrade() -> None:
    op.drop_table("voucher_redemptions")
    op.drop_table("vouchers")
    op.drop_table("promotions")
    op.drop_table("tax_rates")
    op.drop_table("tax_markets")
    op.drop_table("price_list_entries")
    op.drop_table("price_lists")
