"""security review (issue #17): synced mail from an unverified sender, the confirmation
send log (per user and address, and a daily cap per user)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('unverified_sender', sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    op.create_table(
        'confirmation_sends',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('sent_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_confirmation_sends_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmation_sends')),
    )
    op.create_index(op.f('ix_confirmation_sends_user_id_sent_at'), 'confirmation_sends',
                    ['user_id', 'sent_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_confirmation_sends_user_id_sent_at'), table_name='confirmation_sends')
    op.drop_table('confirmation_sends')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('unverified_sender')
