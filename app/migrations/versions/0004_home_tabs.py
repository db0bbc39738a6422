"""home_tabs: who opened the Home tab lately, and what was last published there.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("user"),
    )
    op.create_index("ix_home_tabs_opened_at", "home_tabs", ["opened_at"])


def downgrade() -> None:
    op.drop_index("ix_home_tabs_opened_at", table_name="home_tabs")
    op.drop_table("home_tabs")
