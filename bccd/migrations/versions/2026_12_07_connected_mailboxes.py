"""connected mailboxes: provider, sign-in-again flag, readable sync status; OAuth states
and emailed sign-in links

Revision ID: 0006
Revises: 0008
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0008'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('imap_accounts') as batch:
        batch.add_column(sa.Column('provider', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('oauth_provider', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('needs_signin', sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
        batch.add_column(sa.Column('messages_synced', sa.BigInteger(), server_default='0',
                                   nullable=False))
        batch.add_column(sa.Column('sync_done', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('sync_total', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('initial_synced_at', sa.DateTime(timezone=True), nullable=True))
    # mailboxes that synced before this revision have had their first full pass
    op.execute("UPDATE imap_accounts SET initial_synced_at = last_sync_at")

    op.create_table(
        'oauth_states',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('state_hash', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('user_id', ID, nullable=True),
        sa.Column('account_id', ID, nullable=True),
        sa.Column('secret_enc', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("purpose IN ('mailbox', 'signin')", name=op.f('ck_oauth_states_purpose')),
        sa.ForeignKeyConstraint(['account_id'], ['imap_accounts.id'],
                                name=op.f('fk_oauth_states_account_id_imap_accounts'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_oauth_states_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_states')),
        sa.UniqueConstraint('state_hash', name=op.f('uq_oauth_states_state_hash')),
    )
    with op.batch_alter_table('oauth_states') as batch:
        batch.create_index(batch.f('ix_oauth_states_account_id'), ['account_id'], unique=False)
        batch.create_index(batch.f('ix_oauth_states_user_id'), ['user_id'], unique=False)

    op.create_table(
        'signin_links',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('user_id', ID, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_signin_links_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signin_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_signin_links_token_hash')),
    )
    with op.batch_alter_table('signin_links') as batch:
        batch.create_index(batch.f('ix_signin_links_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_table('signin_links')
    op.drop_table('oauth_states')
    with op.batch_alter_table('imap_accounts') as batch:
        for name in ('initial_synced_at', 'sync_total', 'sync_done', 'messages_synced',
                     'needs_signin', 'oauth_provider', 'provider'):
            batch.drop_column(name)
