"""Migrations on empty SQLite and PostgreSQL databases, no drift between migrations
and models, and the constraints the linking rules rely on — on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from bccd.store.db import Database
from bccd.store.migrate import HEAD, MIGRATIONS_DIR, at_head, check_current, upgrade
from bccd.store.models import Base, Company, Message, Person, PersonEmail, Thread, User


@pytest.fixture
def db(db_url: str):
    upgrade(db_url)
    database = Database(db_url)
    yield database
    database.dispose()


def test_migrations_create_every_table_and_are_current(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert check_current(db)


def test_migrations_live_inside_the_package() -> None:
    import bccd

    assert MIGRATIONS_DIR == Path(bccd.__file__).resolve().parent / "migrations"
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()


def test_head_is_the_newest_migration_and_at_head_reads_it(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_heads() == [HEAD]
    fresh = Database(db_url)
    try:
        assert not at_head(fresh)  # no alembic_version yet: commands migrate it
        upgrade(db_url, "0001")
        assert not at_head(fresh)
        upgrade(db_url)
        assert at_head(fresh)
    finally:
        fresh.dispose()


def test_migrations_produce_exactly_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_upgrade_twice_is_a_no_op(db_url: str, db: Database) -> None:
    upgrade(db_url)
    assert check_current(db)


def _company_and_person(s, slug: str) -> tuple[Company, Person]:
    c = Company(slug=slug, name=slug)
    s.add(c)
    s.flush()
    p = Person(company_id=c.id, name="Bob")
    s.add(p)
    s.flush()
    return c, p


def test_person_email_is_unique_within_a_company(db: Database) -> None:
    with db.transaction() as s:
        c, p = _company_and_person(s, "acme")
        s.add(PersonEmail(company_id=c.id, person_id=p.id, email="bob@client.test"))
    with pytest.raises(IntegrityError), db.transaction() as s:
        p2 = Person(company_id=c.id, name="Bobby")
        s.add(p2)
        s.flush()
        s.add(PersonEmail(company_id=c.id, person_id=p2.id, email="bob@client.test"))


def test_one_address_may_belong_to_persons_of_two_companies(db: Database) -> None:
    with db.transaction() as s:
        c1, p1 = _company_and_person(s, "acme")
        c2, p2 = _company_and_person(s, "globex")
        s.add(PersonEmail(company_id=c1.id, person_id=p1.id, email="bob@client.test"))
        s.add(PersonEmail(company_id=c2.id, person_id=p2.id, email="bob@client.test"))
    with db.read() as s:
        assert s.query(PersonEmail).filter_by(email="bob@client.test").count() == 2


@pytest.mark.spec("5.3")
def test_message_id_is_unique_per_user_not_globally(db: Database) -> None:
    with db.transaction() as s:
        c, _ = _company_and_person(s, "acme")
        users = []
        for i in range(2):
            u = User(company_id=c.id, email=f"u{i}@acme.test", api_token_hash=f"h{i}",
                     bcc_token=f"tokentoken{i:06d}")
            s.add(u)
            s.flush()
            users.append(u)
        t = Thread(company_id=c.id, owner_id=users[0].id)
        s.add(t)
        s.flush()
        for u in users:
            s.add(Message(company_id=c.id, user_id=u.id, thread_id=t.id, dedup_key="mid:x@y",
                          direction="outgoing", raw_sha256="0" * 64))
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(Message(company_id=c.id, user_id=users[0].id, thread_id=t.id, dedup_key="mid:x@y",
                      direction="outgoing", raw_sha256="0" * 64))


@pytest.mark.spec("1")
def test_item_status_must_fit_its_kind(db: Database) -> None:
    from bccd.store.models import Item

    with db.transaction() as s:
        c, _ = _company_and_person(s, "acme")
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(Item(company_id=c.id, kind="lead", title="x", status="won"))


def test_upgrading_keeps_every_row_that_references_a_rebuilt_table(db_url: str) -> None:
    """A revision that rebuilds a table on SQLite (batch mode: copy, drop, rename) must not
    cascade the drop to the rows that reference it: a mailbox's folder state, its message
    refs and its messages survive every upgrade from the first revision."""
    from sqlalchemy import text

    upgrade(db_url, "0002")
    database = Database(db_url)
    try:
        with database.transaction() as s:
            s.execute(text("INSERT INTO companies (slug, name, create_unknown_contacts, created_at) "
                           "VALUES ('acme', 'Acme', true, CURRENT_TIMESTAMP)"))
            company = s.execute(text("SELECT id FROM companies")).scalar_one()
            s.execute(text(
                "INSERT INTO users (company_id, email, name, is_admin, api_token_hash, bcc_token, "
                "sharing_default, linking_mode, email_links, disabled, created_at) "
                "VALUES (:c, 'a@acme.test', 'A', false, 'h', 'abcdefghijklmnop', 'private', 'auto', "
                "'app', false, CURRENT_TIMESTAMP)"), {"c": company})
            user = s.execute(text("SELECT id FROM users")).scalar_one()
            s.execute(text(
                "INSERT INTO imap_accounts (user_id, host, port, security, username, auth_kind, "
                "secret_enc, folders, on_archive, state, state_reason, failures, created_at) "
                "VALUES (:u, 'imap.test', 993, 'ssl', 'a', 'password', 'x', '[]', 'none', "
                "'active', '', 0, CURRENT_TIMESTAMP)"), {"u": user})
            account = s.execute(text("SELECT id FROM imap_accounts")).scalar_one()
            s.execute(text("INSERT INTO imap_folders (account_id, folder, uidvalidity, last_uid) "
                           "VALUES (:a, 'INBOX', 7, 42)"), {"a": account})
    finally:
        database.dispose()
    upgrade(db_url)
    database = Database(db_url)
    try:
        with database.read() as s:
            assert s.execute(text("SELECT folder, last_uid FROM imap_folders")).all() == [
                ("INBOX", 42)]
    finally:
        database.dispose()
