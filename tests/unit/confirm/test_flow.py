"""The alternate-address flow (``bccd.confirm.flow``): add / resend / confirm / remove, with
single-use tokens (SPEC §6)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
from email.message import EmailMessage

import pytest

from bccd.config import Settings
from bccd.confirm import flow, tokens
from bccd.confirm.flow import TokenState, TooSoon
from bccd.errors import Conflict, NotFound
from bccd.notify import outbound
from bccd.quarantine import hold as quarantine
from bccd.store.db import Database
from bccd.store.models import Alternate, OutboxJob, Quarantined, utcnow
from tests.unit.conftest import alice

pytestmark = pytest.mark.spec("6")

ALT = "alice@home.test"
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _add(db: Database, settings: Settings, now: dt.datetime = T0) -> str:
    """Add ALT and return the token from the queued confirmation mail."""
    with db.transaction() as s:
        flow.add(s, settings, alice(s), ALT, now=now)
    return _last_token(db)


def _last_token(db: Database) -> str:
    with db.read() as s:
        job = s.query(OutboxJob).order_by(OutboxJob.id.desc()).first()
        assert job is not None and job.kind == outbound.MAIL_KIND
        raw = outbound.OutboundMail.from_payload(job.payload).message
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    marker = "/confirm/"
    start = text.index(marker) + len(marker)
    return text[start:start + 48]


def _text(raw: str) -> str:
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_add_commits_the_pending_alternate_and_its_mail_job_together(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    with db.read() as s:
        alt = s.query(Alternate).one()
        assert (alt.email, alt.status) == (ALT, "pending")
        assert alt.token_hash == tokens.token_hash(token)
        assert token not in str(alt.__dict__.values())
        assert alt.token_expires_at == T0 + dt.timedelta(hours=72)
        [job] = s.query(OutboxJob).all()
        mail = outbound.OutboundMail.from_payload(job.payload)
    assert mail.recipients == (ALT,)
    assert f"https://crm.example/bcc/confirm/{token}" in _text(mail.message)


def test_a_failed_add_queues_no_mail(db: Database, settings: Settings) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        flow.add(s, settings, alice(s), ALT, now=T0)
        raise RuntimeError("the caller's transaction fails later")
    with db.read() as s:
        assert s.query(OutboxJob).count() == 0 and s.query(Alternate).count() == 0


def test_lookup_never_changes_anything(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    for _ in range(3):
        with db.transaction() as s:
            info = flow.lookup(s, token, now=T0)
        assert info.state is TokenState.PENDING and info.address == ALT
        assert info.user_email == "alice@acme.test"
    with db.read() as s:
        assert s.query(Alternate).one().status == "pending"


def test_confirm_is_single_use_when_two_requests_race(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    results: list[TokenState] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        barrier.wait()
        with db.transaction() as s:
            results.append(flow.confirm(s, token, now=T0).state)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [TokenState.CONFIRMED] + [TokenState.USED] * 3
    with db.read() as s:
        alt = s.query(Alternate).one()
        assert alt.status == "confirmed" and alt.confirmed_at == T0


def test_an_expired_token_does_not_confirm(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    later = T0 + dt.timedelta(hours=72)
    with db.transaction() as s:
        assert flow.confirm(s, token, now=later).state is TokenState.EXPIRED
        assert flow.lookup(s, token, now=later).state is TokenState.EXPIRED
    with db.read() as s:
        assert s.query(Alternate).one().status == "pending"


def test_unknown_and_malformed_tokens(db: Database, settings: Settings) -> None:
    _add(db, settings)
    with db.transaction() as s:
        for bad in (tokens.new_token(), "x", "", "a" * 47, "' OR 1=1 --"):
            assert flow.confirm(s, bad, now=T0).state is TokenState.UNKNOWN
            assert flow.lookup(s, bad, now=T0).state is TokenState.UNKNOWN


def test_resend_is_rate_limited_and_replaces_the_token(db: Database, settings: Settings) -> None:
    first = _add(db, settings)
    with pytest.raises(TooSoon) as err, db.transaction() as s:
        flow.resend(s, settings, alice(s), ALT, now=T0 + dt.timedelta(seconds=100))
    assert 190 <= err.value.retry_after <= 201
    with pytest.raises(TooSoon), db.transaction() as s:  # add again = resend, same limit
        flow.add(s, settings, alice(s), ALT, now=T0 + dt.timedelta(seconds=299))
    with db.transaction() as s:
        sent = flow.resend(s, settings, alice(s), ALT, now=T0 + dt.timedelta(seconds=300))
    assert sent.resent
    second = _last_token(db)
    assert second != first
    with db.transaction() as s:
        assert flow.lookup(s, first, now=T0).state is TokenState.UNKNOWN
        assert flow.confirm(s, second, now=T0).state is TokenState.CONFIRMED
    with pytest.raises(Conflict), db.transaction() as s:
        flow.add(s, settings, alice(s), ALT, now=T0 + dt.timedelta(days=1))


def test_removing_the_alternate_voids_its_token(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    with db.transaction() as s:
        flow.remove(s, alice(s), ALT)
    with db.transaction() as s:
        assert flow.confirm(s, token, now=T0).state is TokenState.UNKNOWN
    with pytest.raises(NotFound), db.transaction() as s:
        flow.remove(s, alice(s), ALT)


def test_confirming_queues_the_release_of_held_copies(db: Database, settings: Settings) -> None:
    token = _add(db, settings)
    with db.transaction() as s:
        s.add(Quarantined(user_id=alice(s).id, from_addr=ALT, dedup_key="k1", raw=b"x",
                          created_at=utcnow()))
    with db.transaction() as s:
        info = flow.confirm(s, token, now=T0)
    assert info.state is TokenState.CONFIRMED and info.held == 1
    with db.read() as s:
        kinds = [j.kind for j in s.query(OutboxJob).order_by(OutboxJob.id)]
        release = s.query(OutboxJob).filter_by(kind=quarantine.RELEASE_KIND).one()
    assert kinds == [outbound.MAIL_KIND, quarantine.RELEASE_KIND]
    assert release.payload == {"user_id": 1, "address": ALT}
