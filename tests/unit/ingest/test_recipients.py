"""Which Smart Bcc address a recipient names, and which user a sender is
(``ingest.recipients``), against a migrated SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bccd import replies as R
from bccd.addresses import entity_bcc_address, user_bcc_address
from bccd.config import Settings
from bccd.ingest import recipients
from bccd.ingest.types import Target
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Alternate, Company, Item, User

pytestmark = pytest.mark.spec("2")

SETTINGS = Settings.model_validate({"smtp": {"bcc_domain": "bcc.test"},
                                    "security": {"secret_key": "unit-key"}})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'unit.sqlite3'}"
    upgrade(url)
    database = Database(url)
    with database.transaction() as s:
        acme = Company(slug="acme", name="Acme")
        other = Company(slug="other", name="Other")
        s.add_all([acme, other])
        s.flush()
        for name, company, disabled in (("alice", acme, False), ("dave", acme, True),
                                        ("olga", other, False)):
            s.add(User(company_id=company.id, email=f"{name}@{company.slug}.test",
                       api_token_hash=f"h-{name}", bcc_token=f"{name}tokenabcdefg",
                       disabled=disabled))
        s.flush()
        users = {u.email.split("@")[0]: u.id for u in s.query(User)}
        s.add_all([
            Alternate(user_id=users["alice"], email="alice@home.test", status="confirmed"),
            Alternate(user_id=users["alice"], email="alice@pending.test", status="pending"),
            Alternate(user_id=users["dave"], email="dave@home.test", status="confirmed"),
            Item(company_id=acme.id, kind="deal", title="Big deal"),
        ])
    yield database
    database.dispose()


def _resolve(db: Database, address: str) -> Target | R.Reply:
    with db.read_only() as s:
        return recipients.resolve(s, SETTINGS, address)


def _ids(db: Database) -> dict[str, int]:
    with db.read_only() as s:
        ids = {u.email.split("@")[0]: u.id for u in s.query(User)}
        ids["deal"] = s.query(Item).one().id
        ids["acme"] = s.query(Company).filter_by(slug="acme").one().id
        return ids


def test_user_addresses(db: Database) -> None:
    ids = _ids(db)
    alice = user_bcc_address("acme", "alicetokenabcdefg", "bcc.test")
    assert _resolve(db, alice) == Target(alice, ids["alice"], ids["acme"])
    assert _resolve(db, alice.upper().replace("BCC.TEST", "Bcc.Test")) == \
        Target(alice, ids["alice"], ids["acme"])
    assert _resolve(db, user_bcc_address("other", "alicetokenabcdefg", "bcc.test")) == \
        R.UNKNOWN_RECIPIENT  # wrong company slug
    assert _resolve(db, user_bcc_address("acme", "davetokenabcdefg", "bcc.test")) == \
        R.UNKNOWN_RECIPIENT  # disabled
    assert _resolve(db, user_bcc_address("acme", "nobodytokenabcdefg", "bcc.test")) == \
        R.UNKNOWN_RECIPIENT
    assert _resolve(db, "alice@elsewhere.test") == R.RELAY_DENIED
    assert _resolve(db, "no-at-sign") == R.BAD_ADDRESS_SYNTAX
    assert _resolve(db, "x@bad..domain") == R.BAD_ADDRESS_SYNTAX
    assert _resolve(db, "acme@bcc.test") == R.UNKNOWN_RECIPIENT


def test_entity_addresses(db: Database) -> None:
    ids = _ids(db)
    deal = entity_bcc_address("unit-key", "acme", "deal", ids["deal"], "bcc.test")
    assert _resolve(db, deal) == Target(deal, None, ids["acme"], "deal", ids["deal"])
    for forged in (entity_bcc_address("other-key", "acme", "deal", ids["deal"], "bcc.test"),
                   entity_bcc_address("unit-key", "acme", "lead", ids["deal"], "bcc.test"),
                   entity_bcc_address("unit-key", "other", "deal", ids["deal"], "bcc.test"),
                   entity_bcc_address("unit-key", "acme", "deal", ids["deal"] + 1, "bcc.test")):
        assert _resolve(db, forged) == R.UNKNOWN_RECIPIENT


@pytest.mark.spec("4.1")
def test_users_for_a_sender(db: Database) -> None:
    ids = _ids(db)
    acme = ids["acme"]
    with db.read_only() as s:
        enabled = {a: recipients.company_user_for_sender(s, acme, a) for a in (
            "alice@acme.test", "alice@home.test", "alice@pending.test", "dave@acme.test",
            "dave@home.test", "olga@other.test", "nobody@acme.test")}
        disabled = {a: recipients.disabled_user_for_sender(s, acme, a) for a in enabled}
    assert enabled == {"alice@acme.test": ids["alice"], "alice@home.test": ids["alice"],
                       "alice@pending.test": None, "dave@acme.test": None,
                       "dave@home.test": None, "olga@other.test": None,
                       "nobody@acme.test": None}
    assert disabled == {**dict.fromkeys(enabled), "dave@acme.test": ids["dave"],
                        "dave@home.test": ids["dave"]}
