"""Quorum votes, the resolved requester of an approval, and expiry.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("requester", sa.String(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("expired", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_approvals_expires_at", ["expires_at"])
    op.create_table(
        "votes",
        sa.Column("approval_id", sa.String(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["approval_id"], ["approvals.id"]),
        sa.PrimaryKeyConstraint("approval_id", "user"),
    )


def downgrade() -> None:
    op.drop_table("votes")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_index("ix_approvals_expires_at")
        batch.drop_column("expired")
        batch.drop_column("expires_at")
        batch.drop_column("requester")
