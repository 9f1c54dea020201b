"""mailbox settings: sync scope, submission settings, the provider's authserv-ids

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('imap_accounts') as batch:
        batch.add_column(sa.Column('scope', sa.String(length=8), server_default='all',
                                   nullable=False))
        batch.add_column(sa.Column('smtp_host', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('smtp_port', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('smtp_security', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('authserv_ids', sa.JSON(),
                                   server_default='[]', nullable=False))
        batch.create_check_constraint('scope', "scope IN ('all', 'known')")
        batch.create_check_constraint(
            'smtp_security', "smtp_security IS NULL OR smtp_security IN ('ssl', 'starttls')")


def downgrade() -> None:
    with op.batch_alter_table('imap_accounts') as batch:
        batch.drop_constraint('ck_imap_accounts_smtp_security', type_='check')
        batch.drop_constraint('ck_imap_accounts_scope', type_='check')
        batch.drop_column('authserv_ids')
        batch.drop_column('smtp_security')
        batch.drop_column('smtp_port')
        batch.drop_column('smtp_host')
        batch.drop_column('scope')
