"""compose and send: templates, sends (the outbox of mail written in bccd), the
'compose' message source, a user's signature and a deal's value

Revision ID: 0005
Revises: 0009
Create Date: 2026-12-07 03:02:13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0005'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('templates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('company_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('created_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_templates_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_templates_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_templates'))
    )
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_templates_company_id_shared'), ['company_id', 'shared'], unique=False)
        batch_op.create_index(batch_op.f('ix_templates_user_id'), ['user_id'], unique=False)

    op.create_table('sends',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rfc_message_id', sa.String(length=998), nullable=False),
    sa.Column('envelope_from', sa.String(length=320), nullable=False),
    sa.Column('pending', sa.JSON(), nullable=False),
    sa.Column('accepted', sa.JSON(), nullable=False),
    sa.Column('refused', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('link_kind', sa.String(length=16), nullable=True),
    sa.Column('link_id', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('created_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', bccd.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('sending', 'queued', 'sent', 'failed', 'refused')", name=op.f('ck_sends_status')),
    sa.ForeignKeyConstraint(['account_id'], ['imap_accounts.id'], name=op.f('fk_sends_account_id_imap_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_sends_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sends_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sends')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name=op.f('uq_sends_user_id_idempotency_key'))
    )
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sends_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sends_message_id'), ['message_id'], unique=False)

    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('value', sa.String(length=64), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_html', sa.Text(), server_default='', nullable=False))

    with op.batch_alter_table('message_sources', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_message_sources_source'), type_='check')
        batch_op.create_check_constraint('source', "source IN ('bcc', 'imap', 'compose')")



def downgrade() -> None:
    op.execute("DELETE FROM message_sources WHERE source = 'compose'")
    with op.batch_alter_table('message_sources', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_message_sources_source'), type_='check')
        batch_op.create_check_constraint('source', "source IN ('bcc', 'imap')")

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('signature_html')

    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('value')

    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sends_message_id'))
        batch_op.drop_index(batch_op.f('ix_sends_account_id'))

    op.drop_table('sends')
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_templates_user_id'))
        batch_op.drop_index(batch_op.f('ix_templates_company_id_shared'))

    op.drop_table('templates')
