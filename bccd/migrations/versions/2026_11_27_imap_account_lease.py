"""imap account lease: one instance syncs an account at a time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('imap_accounts') as batch:
        batch.add_column(sa.Column('lease_owner', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('lease_until', bccd.store.models.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('imap_accounts') as batch:
        batch.drop_column('lease_until')
        batch.drop_column('lease_owner')
