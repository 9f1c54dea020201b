"""blobs in the database (storage.blobs = "database") and leases of the periodic passes

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('created_at', bccd.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_blobs')),
    )
    op.create_table(
        'blob_chunks',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['sha256'], ['blobs.sha256'],
                                name=op.f('fk_blob_chunks_sha256_blobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('sha256', 'n', name=op.f('pk_blob_chunks')),
    )
    op.create_table(
        'periodic_passes',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=200), nullable=True),
        sa.Column('lease_until', bccd.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('done_at', bccd.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_periodic_passes')),
    )


def downgrade() -> None:
    op.drop_table('periodic_passes')
    op.drop_table('blob_chunks')
    op.drop_table('blobs')
