"""open and click tracking (SPEC §13): the tracked messages and their hits, a user's
tracking settings, a company's tracking policy, and the recipients' bytes of a tracked send

Plain ``ADD COLUMN``s (no table rebuild on SQLite): every new column has a default or
is nullable.

Revision ID: 0011
Revises: 0005
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = bccd.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'tracking',
        sa.Column('id', ID, autoincrement=False, nullable=False),
        sa.Column('send_id', ID, nullable=False),
        sa.Column('user_id', ID, nullable=False),
        sa.Column('company_id', ID, nullable=False),
        sa.Column('opens', sa.Boolean(), nullable=False),
        sa.Column('clicks', sa.Boolean(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('links', sa.JSON(), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('sent_at', UTC, nullable=True),
        sa.Column('opens_human', sa.Integer(), nullable=False),
        sa.Column('opens_machine', sa.Integer(), nullable=False),
        sa.Column('first_human_open_at', UTC, nullable=True),
        sa.Column('link_counts', sa.JSON(), nullable=False),
        sa.Column('decoy_hits', sa.Integer(), nullable=False),
        sa.Column('last_click_at', UTC, nullable=True),
        sa.Column('last_click_link', sa.Integer(), nullable=True),
        sa.Column('last_click_hit', ID, nullable=True),
        sa.Column('notified', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'],
                                name=op.f('fk_tracking_company_id_companies'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['send_id'], ['sends.id'],
                                name=op.f('fk_tracking_send_id_sends'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_tracking_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tracking')),
        sa.UniqueConstraint('send_id', name=op.f('uq_tracking_send_id')),
    )
    op.create_index(op.f('ix_tracking_company_id'), 'tracking', ['company_id'], unique=False)
    op.create_index(op.f('ix_tracking_user_id'), 'tracking', ['user_id'], unique=False)
    op.create_table(
        'tracking_hits',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('tracking_id', ID, nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.Column('link', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.CheckConstraint("kind IN ('human', 'machine')", name=op.f('ck_tracking_hits_kind')),
        sa.ForeignKeyConstraint(['tracking_id'], ['tracking.id'],
                                name=op.f('fk_tracking_hits_tracking_id_tracking'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tracking_hits')),
    )
    op.create_index(op.f('ix_tracking_hits_tracking_id_kind_link'), 'tracking_hits',
                    ['tracking_id', 'kind', 'link'], unique=False)
    op.add_column('companies', sa.Column('tracking', sa.String(length=16),
                                         server_default='allowed', nullable=False))
    op.add_column('sends', sa.Column('tracked_raw', sa.LargeBinary(), nullable=True))
    op.add_column('users', sa.Column('tracking_opens', sa.Boolean(), server_default=sa.false(),
                                     nullable=False))
    op.add_column('users', sa.Column('tracking_clicks', sa.Boolean(), server_default=sa.false(),
                                     nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('tracking_clicks')
        batch.drop_column('tracking_opens')
    with op.batch_alter_table('sends') as batch:
        batch.drop_column('tracked_raw')
    with op.batch_alter_table('companies') as batch:
        batch.drop_column('tracking')
    op.drop_index(op.f('ix_tracking_hits_tracking_id_kind_link'), table_name='tracking_hits')
    op.drop_table('tracking_hits')
    op.drop_index(op.f('ix_tracking_user_id'), table_name='tracking')
    op.drop_index(op.f('ix_tracking_company_id'), table_name='tracking')
    op.drop_table('tracking')
