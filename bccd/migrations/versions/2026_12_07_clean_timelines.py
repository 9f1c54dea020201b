"""clean timelines: message categories, company mail settings, bouncing addresses,
meetings, sync-scope skips

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:00:00

SPEC §5.10, §5.13, §7 "Scope":

- ``messages.category`` / ``category_reason`` and ``threads.category`` / ``automated``
  (the mail already stored is ``person``, as it was treated);
- ``companies.domains`` (NULL: its users' login domains), ``automated_mail`` (default
  ``unlinked``) and ``internal_mail`` (default ``store``);
- ``person_emails.bouncing_since`` / ``bounce_reason``;
- the ``meetings`` and ``imap_scope_skips`` tables.

Every column is a plain ``ADD COLUMN`` (on SQLite with its CHECK inline): recreating
``threads`` or ``messages`` in batch mode would copy every stored message.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0010'
down_revision = '0011'
branch_labels = None
depends_on = None

_CATEGORY = "category IN ('person', 'internal', 'bounce', 'auto_reply', 'bulk')"
_AUTOMATED = "automated_mail IN ('unlinked', 'store', 'drop')"
_INTERNAL = "internal_mail IN ('store', 'drop')"
_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_WHEN = bccd.store.models.UTCDateTime(timezone=True)

# (table, column, SQLite column definition, PostgreSQL column, check name, check)
_COLUMNS = [
    ('messages', 'category', "VARCHAR(16) DEFAULT 'person' NOT NULL",
     sa.Column('category', sa.String(16), server_default='person', nullable=False),
     'ck_messages_category', _CATEGORY),
    ('messages', 'category_reason', "TEXT DEFAULT '' NOT NULL",
     sa.Column('category_reason', sa.Text(), server_default='', nullable=False), None, None),
    ('threads', 'category', "VARCHAR(16) DEFAULT 'person' NOT NULL",
     sa.Column('category', sa.String(16), server_default='person', nullable=False),
     'ck_threads_category', _CATEGORY),
    ('threads', 'automated', "BOOLEAN DEFAULT 0 NOT NULL",
     sa.Column('automated', sa.Boolean(), server_default=sa.false(), nullable=False), None, None),
    ('companies', 'domains', "JSON",
     sa.Column('domains', sa.JSON(), nullable=True), None, None),
    ('companies', 'automated_mail', "VARCHAR(16) DEFAULT 'unlinked' NOT NULL",
     sa.Column('automated_mail', sa.String(16), server_default='unlinked', nullable=False),
     'ck_companies_automated_mail', _AUTOMATED),
    ('companies', 'internal_mail', "VARCHAR(16) DEFAULT 'store' NOT NULL",
     sa.Column('internal_mail', sa.String(16), server_default='store', nullable=False),
     'ck_companies_internal_mail', _INTERNAL),
    ('person_emails', 'bouncing_since', "DATETIME",
     sa.Column('bouncing_since', _WHEN, nullable=True), None, None),
    ('person_emails', 'bounce_reason', "TEXT",
     sa.Column('bounce_reason', sa.Text(), nullable=True), None, None),
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, sqlite_def, pg_column, check_name, check in _COLUMNS:
        if sqlite:
            inline = f" CONSTRAINT {check_name} CHECK ({check})" if check else ""
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sqlite_def}{inline}")
        else:
            op.add_column(table, pg_column)
            if check:
                op.create_check_constraint(check_name, table, check)
    op.create_table(
        'meetings',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('company_id', _ID, nullable=False),
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('thread_id', _ID, nullable=False),
        sa.Column('uid', sa.String(length=998), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('method', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('location', sa.Text(), nullable=False),
        sa.Column('start_at', _WHEN, nullable=True),
        sa.Column('end_at', _WHEN, nullable=True),
        sa.Column('start_offset', sa.Integer(), nullable=False),
        sa.Column('end_offset', sa.Integer(), nullable=False),
        sa.Column('all_day', sa.Boolean(), nullable=False),
        sa.Column('timezone', sa.String(length=255), nullable=False),
        sa.Column('organizer', sa.String(length=320), nullable=False),
        sa.Column('organizer_name', sa.Text(), nullable=False),
        sa.Column('attendees', sa.JSON(), nullable=False),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('updated_at', _WHEN, nullable=False),
        sa.CheckConstraint("status IN ('confirmed', 'tentative', 'cancelled')",
                           name=op.f('ck_meetings_status')),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'],
                                name=op.f('fk_meetings_company_id_companies'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['thread_id'], ['threads.id'],
                                name=op.f('fk_meetings_thread_id_threads'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_meetings_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_meetings')),
        sa.UniqueConstraint('user_id', 'uid', name=op.f('uq_meetings_user_id_uid')),
    )
    op.create_index(op.f('ix_meetings_company_id'), 'meetings', ['company_id'], unique=False)
    op.create_index(op.f('ix_meetings_thread_id'), 'meetings', ['thread_id'], unique=False)
    op.create_table(
        'imap_scope_skips',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('account_id', _ID, nullable=False),
        sa.Column('folder', sa.String(length=1000), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
        sa.Column('uid', sa.BigInteger(), nullable=False),
        sa.Column('examined_mark', sa.BigInteger(), nullable=False),
        sa.Column('message_date', _WHEN, nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['imap_accounts.id'],
                                name=op.f('fk_imap_scope_skips_account_id_imap_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_imap_scope_skips')),
        sa.UniqueConstraint('account_id', 'folder', 'uidvalidity', 'uid',
                            name=op.f('uq_imap_scope_skips_account_id_folder_uidvalidity_uid')),
    )


def downgrade() -> None:
    op.drop_table('imap_scope_skips')
    op.drop_index(op.f('ix_meetings_thread_id'), table_name='meetings')
    op.drop_index(op.f('ix_meetings_company_id'), table_name='meetings')
    op.drop_table('meetings')
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, _, _, check_name, check in reversed(_COLUMNS):
        if sqlite:  # never recreate the tables (see the module docstring)
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            if check:
                op.drop_constraint(check_name, table, type_='check')
            op.drop_column(table, column)
