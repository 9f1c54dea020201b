"""link state: why each thread is (not) linked, and organizations linked through persons

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-07 04:00:00

Adds ``threads.link_state`` (SPEC §5.12, ``bccd.linking.linkstate``) with its index, and
fills it for the threads already stored from their links, suggestions and owners' linking
mode. Links the stored threads to the organizations of their persons (SPEC §5.11,
``how = auto``) where the thread's owner may see the organization, as filing does now.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import bccd.store.models

revision = '0009'
down_revision = '0004'
branch_labels = None
depends_on = None

STATE = """
UPDATE threads SET link_state = CASE
  WHEN EXISTS (SELECT 1 FROM links l WHERE l.thread_id = threads.id
               AND l.kind IN ('deal', 'lead', 'project')) THEN 'linked'
  WHEN NOT EXISTS (SELECT 1 FROM links l WHERE l.thread_id = threads.id
                   AND l.kind = 'person') THEN 'no_person'
  WHEN EXISTS (SELECT 1 FROM users u WHERE u.id = threads.owner_id
               AND u.linking_mode = 'manual') THEN 'manual_mode'
  WHEN EXISTS (SELECT 1 FROM suggestions s WHERE s.thread_id = threads.id) THEN 'needs_choice'
  ELSE 'no_open_item' END
"""

ORGANIZATIONS = """
INSERT INTO links (thread_id, kind, entity_id, how, created_at)
SELECT DISTINCT l.thread_id, 'organization', p.organization_id, 'auto', :now
FROM links l
JOIN persons p ON p.id = l.entity_id
JOIN threads t ON t.id = l.thread_id
JOIN users u ON u.id = t.owner_id
JOIN organizations o ON o.id = p.organization_id
WHERE l.kind = 'person'
  AND (o.visible_to = 'company' OR o.owner_id = t.owner_id OR u.is_admin)
  AND NOT EXISTS (SELECT 1 FROM links x WHERE x.thread_id = l.thread_id
                  AND x.kind = 'organization' AND x.entity_id = p.organization_id)
"""


CHECK = ("link_state IN ('linked', 'needs_choice', 'no_open_item', 'no_person', 'manual_mode',"
         " 'automated')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # a plain ADD COLUMN: batch mode would recreate the table, and dropping the old
        # one under SQLite's foreign keys would take every thread's messages and links
        op.execute("ALTER TABLE threads ADD COLUMN link_state VARCHAR(16) DEFAULT 'no_person'"
                   f" NOT NULL CONSTRAINT ck_threads_link_state CHECK ({CHECK})")
    else:
        op.add_column('threads', sa.Column('link_state', sa.String(length=16),
                                           server_default='no_person', nullable=False))
        op.create_check_constraint(op.f('ck_threads_link_state'), 'threads', CHECK)
    op.create_index(op.f('ix_threads_company_id_link_state'), 'threads',
                    ['company_id', 'link_state'], unique=False)
    conn = op.get_bind()
    conn.execute(sa.text(ORGANIZATIONS).bindparams(
        sa.bindparam('now', dt.datetime.now(dt.UTC), type_=bccd.store.models.UTCDateTime())))
    conn.execute(sa.text(STATE))


def downgrade() -> None:
    op.drop_index(op.f('ix_threads_company_id_link_state'), table_name='threads')
    if op.get_bind().dialect.name == "sqlite":  # never recreate threads (see upgrade)
        op.execute("ALTER TABLE threads DROP COLUMN link_state")
    else:
        op.drop_constraint(op.f('ck_threads_link_state'), 'threads', type_='check')
        op.drop_column('threads', 'link_state')
