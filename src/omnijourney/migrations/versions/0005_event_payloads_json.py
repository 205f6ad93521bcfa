"""events: payload columns as json (stored as sent) instead of jsonb

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:10:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = ("properties", "traits", "context")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps JSON as text either way
    for name in COLUMNS:
        op.alter_column("events", name, type_=sa.JSON(), postgresql_using=f"{name}::json")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in COLUMNS:
        op.alter_column("events", name, type_=postgresql.JSONB(astext_type=Text()), postgresql_using=f"{name}::jsonb")
