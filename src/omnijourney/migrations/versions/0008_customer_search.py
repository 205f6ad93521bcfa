"""customer search: the list newest first, and names by prefix

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

NAME_TRAITS = ('first_name', 'last_name', 'name')


def _name_index(trait: str, dialect: str) -> tuple[str, str]:
    """The expression and condition of a name index, as customers.models declares them (frozen here)."""
    if dialect == 'postgresql':
        return f"lower(traits ->> '{trait}')", f"(traits ->> '{trait}') IS NOT NULL"
    return f"lower(json_extract(traits, '$.{trait}'))", f"json_extract(traits, '$.{trait}') IS NOT NULL"


def upgrade() -> None:
    # plain CREATE INDEX: it holds off profile writes while it builds (seconds per index at a million profiles)
    op.create_index('ix_customers_newest', 'customers', ['created_at', 'id'],
                    postgresql_where=sa.text('merged_into IS NULL'))
    dialect = op.get_bind().dialect.name
    for trait in NAME_TRAITS:
        expression, condition = _name_index(trait, dialect)
        op.execute(f'CREATE INDEX ix_customers_{trait} ON customers ({expression}) WHERE {condition}')


def downgrade() -> None:
    for trait in NAME_TRAITS:
        op.execute(f'DROP INDEX ix_customers_{trait}')
    op.drop_index('ix_customers_newest', table_name='customers')
