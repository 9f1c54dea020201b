"""security review (issue #17): synced mail from an unverified sender, the confirmation
send log (per user and address, and a daily cap per user), and forwarded originals
stored before with the forwarder's verdict as their own (now ``verdict = forwarded``)

Revision ID: 0004
Revises: 0006
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0004'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('unverified_sender', sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    _forwarded_originals()
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


def _forwarded_originals() -> None:
    """Forwarded originals stored before this revision carry the forwarder's verdict as
    their own (SPEC §4.3): give them ``verdict = forwarded`` with that verdict kept as the
    forwarding's. Such a message has ``forwarded_by`` and a From that is none of its
    user's addresses (a copy the user sent has theirs); a few rows, read in batches."""
    conn = op.get_bind()
    messages = sa.table('messages', sa.column('id', sa.Integer), sa.column('user_id', sa.Integer),
                        sa.column('from_addr', sa.String), sa.column('forwarded_by', sa.String),
                        sa.column('auth', sa.JSON))
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('email', sa.String))
    alternates = sa.table('alternates', sa.column('user_id', sa.Integer),
                          sa.column('email', sa.String))
    own = sa.or_(
        sa.exists().where(users.c.id == messages.c.user_id, users.c.email == messages.c.from_addr),
        sa.exists().where(alternates.c.user_id == messages.c.user_id,
                          alternates.c.email == messages.c.from_addr))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.forwarded_by, messages.c.auth)
            .where(messages.c.id > last, messages.c.forwarded_by.is_not(None), ~own)
            .order_by(messages.c.id).limit(500)).all()
        if not rows:
            return
        for mid, by, auth in rows:
            auth = dict(auth or {})
            if auth.get('verdict') != 'forwarded':
                outer = {k: v for k, v in auth.items() if k != 'forwarding'}
                conn.execute(messages.update().where(messages.c.id == mid).values(auth={
                    'dkim': 'none', 'spf': 'none', 'dmarc': 'none', 'arc': 'none',
                    'dkim_domains': [], 'spf_domain': '', 'header_from_domain': '', 'policy': '',
                    'verdict': 'forwarded', 'summary': 'forwarded',
                    'reason': f'recovered from a message forwarded by {by}',
                    'results_header': '', 'extra': {}, 'forwarding': {**outer, 'by': by}}))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index(op.f('ix_confirmation_sends_user_id_sent_at'), table_name='confirmation_sends')
    op.drop_table('confirmation_sends')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('unverified_sender')
