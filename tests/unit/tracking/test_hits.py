"""Recording a hit (SPEC §13, ``tracking.hits``): one row read and written and one added
per hit — counted from the statements the database sees —, nothing written for an unknown
message or under the company's ``off``, a burst's first click made a machine's too, and
the webhooks of the first human open and click: queued for later, sent once, never for a
hit a burst took back."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bccd.config import Settings
from bccd.store import events
from bccd.store.db import Database
from bccd.store.models import Company, OutboxJob, User
from bccd.store.models_compose import Send
from bccd.store.models_tracking import Tracking, TrackingHit
from bccd.tracking import hits, policy
from bccd.tracking.hits import Hit
from bccd.tracking.links import Plan
from bccd.tracking.tokens import DECOY, Claim

pytestmark = pytest.mark.spec("13")

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
TID = 4_242_424_242


def _never_sender(s: Any, token_hash: str, user_id: int) -> bool:
    return False


@pytest.fixture
def tracked(db: Database) -> Iterator[Database]:
    """Alice's message with two tracked links, sent an hour ago; webhooks on."""
    events.attach(db, Settings.model_validate({"webhooks": {"url": "http://hooks.test/"}}))
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.email == "alice@acme.test"))
        assert user is not None
        send = Send(user_id=user.id, rfc_message_id="m1@acme.test", envelope_from=user.email,
                    pending=[], accepted=["dana@client.test"], refused=[], status="sent")
        s.add(send)
        s.flush()
        plan = Plan(TID, True, True, int(hour_ago.timestamp()), "https://crm.test", b"k" * 32)
        hits.create(s, plan, ["https://example.com/a", "https://example.com/b"],
                    send_id=send.id, user_id=user.id, company_id=user.company_id)
        s.flush()
        hits.transmitted(s, send.id, hour_ago)
    yield db
    events.attach(db, Settings())


def _record(db: Database, claim: Claim, **kw: Any) -> hits.Outcome:
    check = kw.pop("check", _never_sender)
    with db.transaction() as s:
        return hits.record(s, Hit(claim, user_agent=kw.pop("agent", BROWSER), **kw), check)


def _statements(db: Database) -> tuple[list[str], Any]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", before)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", before)


def _rows(db: Database) -> list[tuple[int | None, str, str]]:
    with db.read() as s:
        return [(h.link, h.kind, h.reason) for h in s.scalars(
            select(TrackingHit).order_by(TrackingHit.id))]


def _jobs(db: Database) -> list[dict[str, Any]]:
    with db.read() as s:
        return [j.payload for j in s.scalars(select(OutboxJob).where(
            OutboxJob.kind == hits.KIND).order_by(OutboxJob.id))]


def test_a_hit_reads_and_writes_one_row_and_adds_one(tracked: Database) -> None:
    _record(tracked, Claim("o", TID, 0, 0))  # the first human open also queues its webhook
    seen, stop = _statements(tracked)
    try:
        out = _record(tracked, Claim("c", TID, 1, 0))
        out2 = _record(tracked, Claim("o", TID, 0, 0), agent="Mozilla/5.0")
    finally:
        stop()
    assert (out.url, out.kind, out.code) == ("https://example.com/b", "human", "person")
    assert (out2.kind, out2.code) == ("machine", "apple-mpp")
    work = [q for q in seen if not re.match(r"(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)", q)]
    tables = [re.search(r"(?:FROM|INTO|UPDATE) (\w+)", q).group(1) for q in work]  # type: ignore[union-attr]
    # the click: the row, its hit, its webhook job (a first human click), the row's counts
    assert tables[:4] == ["tracking", "tracking_hits", "outbox", "tracking"]
    # the machine open: the row, its hit, the row's counts — nothing else
    assert tables[4:] == ["tracking", "tracking_hits", "tracking"]
    assert all("WHERE tracking.id = ?" in q for q in work if q.startswith("SELECT"))
    assert all(re.search(r"WHERE tracking.id = \?$", q) for q in work if q.startswith("UPDATE"))


def test_nothing_is_written_for_an_unknown_message_a_link_past_its_list_or_the_wrong_kind(
        tracked: Database) -> None:
    seen, stop = _statements(tracked)
    try:
        assert not _record(tracked, Claim("c", TID + 1, 0, 0)).found
        assert not _record(tracked, Claim("c", TID, 5, 0)).found
    finally:
        stop()
    assert [q for q in seen if q.startswith(("INSERT", "UPDATE", "DELETE"))] == []
    with tracked.transaction() as s:
        s.execute(Tracking.__table__.update().values(opens=False))
    assert not _record(tracked, Claim("o", TID, 0, 0)).found
    assert _rows(tracked) == []


def test_the_companys_off_records_nothing_and_the_link_still_redirects(tracked: Database) -> None:
    with tracked.transaction() as s:
        company = s.scalar(select(Company).where(Company.slug == "acme"))
        assert company is not None
        policy.set_company(s, company, "off")
    out = _record(tracked, Claim("c", TID, 0, 0))
    assert out.found and out.url == "https://example.com/a" and out.kind is None
    assert _rows(tracked) == []
    with tracked.transaction() as s:
        company = s.scalar(select(Company).where(Company.slug == "acme"))
        assert company is not None
        policy.set_company(s, company, "allowed")
    assert _record(tracked, Claim("c", TID, 0, 0)).kind == "human"


def test_a_burst_makes_its_first_click_a_machines_too(tracked: Database) -> None:
    first = _record(tracked, Claim("c", TID, 0, 0))
    second = _record(tracked, Claim("c", TID, 1, 0))
    assert (first.kind, second.kind, second.code, second.reclassified) == (
        "human", "machine", "burst", True)
    assert _rows(tracked) == [(0, "machine", "burst"), (1, "machine", "burst")]
    with tracked.read() as s:
        row = s.get(Tracking, TID)
        assert row is not None and row.link_counts == [[0, 1], [0, 1]]
    # the decoy counts for the burst too, and is always a machine's
    decoy = _record(tracked, Claim("c", TID, DECOY, 0))
    assert (decoy.kind, decoy.code, decoy.url) == ("machine", "decoy", None)


def test_the_first_human_hits_webhooks_are_sent_once_and_never_for_a_taken_back_click(
        tracked: Database) -> None:
    assert _record(tracked, Claim("o", TID, 0, 0), agent="curl/8.5").kind == "machine"
    assert _record(tracked, Claim("o", TID, 0, 0)).kind == "human"
    assert _record(tracked, Claim("o", TID, 0, 0)).kind == "human"  # a second person open
    _record(tracked, Claim("c", TID, 0, 0))
    _record(tracked, Claim("c", TID, 1, 0))  # a burst: link 0's click is taken back
    jobs = _jobs(tracked)
    assert len(jobs) == 2  # the first human open, and link 0's (then) first human click
    for payload in jobs:
        hits._confirm(tracked, payload["tracking_id"], payload["hit_id"])
        hits._confirm(tracked, payload["tracking_id"], payload["hit_id"])  # a retried job
    with tracked.read() as s:
        sent = [j.payload["event"] for j in s.scalars(select(OutboxJob).where(
            OutboxJob.kind == events.KIND))]
        assert s.scalar(select(func.count()).select_from(TrackingHit)) == 5
    assert [e["type"] for e in sent] == ["message.opened"]
    assert sent[0]["data"]["message_id"] == "m1@acme.test" and sent[0]["data"]["user"] == \
        "alice@acme.test"


def test_the_senders_session_is_a_machine_hit(tracked: Database) -> None:
    asked: list[tuple[str, int]] = []

    def is_sender(s: Any, token_hash: str, user_id: int) -> bool:
        asked.append((token_hash, user_id))
        return True

    out = _record(tracked, Claim("o", TID, 0, 0), session_hash="abc", check=is_sender)
    assert (out.kind, out.code) == ("machine", "sender") and asked[0][0] == "abc"
    assert _record(tracked, Claim("o", TID, 0, 0), check=is_sender).kind == "human"
    assert len(asked) == 1  # no cookie, no lookup
