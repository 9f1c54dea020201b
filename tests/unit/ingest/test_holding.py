"""Keeping copies in quarantine (``bccd.ingest.holding``): bounds, one notice per address per
day, and links that stay valid (SPEC §4.4)."""

from __future__ import annotations

import datetime as dt

import pytest

from bccd.config import Settings
from bccd.confirm import flow
from bccd.ingest import holding
from bccd.ingest.outcome import Disposition
from bccd.notify import outbound
from bccd.quarantine import hold
from bccd.store.db import Database
from bccd.store.models import Alternate, Notice, OutboxJob
from tests.unit.conftest import alice, make_settings

pytestmark = pytest.mark.spec("4.4")

ALT = "alice@home.test"
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _req(key: str, address: str = ALT) -> hold.HoldRequest:
    return hold.HoldRequest(user_id=1, address=address, raw=b"From: x\r\n\r\nbody\r\n",
                                  dedup_key=key, subject=f"s-{key}", envelope={}, auth={})


def _notices(db: Database) -> list[outbound.OutboundMail]:
    with db.read() as s:
        jobs = s.query(OutboxJob).filter_by(kind=outbound.MAIL_KIND).order_by(OutboxJob.id).all()
        return [outbound.OutboundMail.from_payload(j.payload) for j in jobs]


def test_one_notice_per_address_per_day(db: Database, settings: Settings) -> None:
    for i, at in enumerate([T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=23)]):
        out = holding.keep(db, settings, _req(f"k{i}"), now=at)
        assert out.disposition is Disposition.QUARANTINED and out.reply.code == 250
    assert len(_notices(db)) == 1
    holding.keep(db, settings, _req("other", "alice@elsewhere.test"), now=T0)
    assert len(_notices(db)) == 2
    holding.keep(db, settings, _req("k9"), now=T0 + dt.timedelta(hours=24, minutes=1))
    mails = _notices(db)
    assert len(mails) == 3
    assert mails[2].recipients == ("alice@acme.test",)
    assert "4 Bcc copies" in mails[2].message
    with db.read() as s:
        assert s.query(Notice).count() == 2


def test_the_same_message_is_kept_once(db: Database, settings: Settings) -> None:
    a = holding.keep(db, settings, _req("same"), now=T0)
    b = holding.keep(db, settings, _req("same"), now=T0)
    assert a.extra["quarantine_id"] == b.extra["quarantine_id"]
    assert b.reason == "already in quarantine"


def test_the_quarantine_refuses_beyond_its_bound(db: Database, tmp_path) -> None:
    settings = make_settings(tmp_path, retention={"quarantine_max_per_user": 2})
    assert holding.keep(db, settings, _req("1"), now=T0).disposition is Disposition.QUARANTINED
    assert holding.keep(db, settings, _req("2"), now=T0).disposition is Disposition.QUARANTINED
    out = holding.keep(db, settings, _req("3"), now=T0)
    assert out.disposition is Disposition.REFUSED
    assert (out.reply.code, out.reply.enhanced) == (550, "5.7.1")
    assert "quarantine is full" in out.reply.text and "bccd alt add" in out.reply.text


def test_a_notice_keeps_the_link_already_emailed_to_the_address_alive(
        db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        flow.add(s, settings, alice(s), ALT, now=T0)
        before = s.query(Alternate).one().token_hash
    holding.keep(db, settings, _req("k"), now=T0 + dt.timedelta(minutes=5))
    notice = _notices(db)[-1]
    assert notice.recipients == ("alice@acme.test",)
    assert "/confirm/" not in notice.message and "we emailed a" in notice.message
    with db.read() as s:
        assert s.query(Alternate).one().token_hash == before


def test_a_notice_sends_the_user_to_settings_and_issues_no_token(
        db: Database, settings: Settings) -> None:
    """SPEC §4.4: the notice never confirms; confirming emails the address itself."""
    holding.keep(db, settings, _req("k"), now=T0)
    [notice] = _notices(db)
    assert "/confirm/" not in notice.message
    assert "https://crm.example/bcc/mail/settings" in notice.message
    with db.read() as s:
        alt = s.query(Alternate).one()
        assert alt.status == "pending" and alt.last_sent_at is None
        assert alt.token_hash is None and alt.token_expires_at is None
