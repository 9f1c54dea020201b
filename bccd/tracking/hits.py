"""Recording a hit on the pixel or on a link (SPEC §13), and the tracking record of a
message as it is sent.

``record(s, hit, is_sender)`` — one request whose token verified (``tokens.verify``; the
web front calls this only then): in the caller's transaction (``Database.write``: hits
are group-committed), it reads the message's ``Tracking`` row by its primary key (locked
on PostgreSQL, so hits on one message are recorded one at a time), classifies the hit
(``rules.classify``: the row holds what the rules need — when the message went out, the
last click), appends one ``TrackingHit`` and updates the row's counts. That is the whole
work of a hit: one row read and written, one row added. Two things add to it, rarely:
a request carrying a session cookie is looked up (``is_sender``: is it the sender's?),
and a ``burst`` (a second link clicked within a second) makes the click before it a
machine's as well — that one earlier hit is read and corrected. → ``Outcome``: whether
the message is known (``found``: else ``404``), the URL a link redirects to (from the
stored list, by the token's index — never from the request), and how the hit was
classified (None when the company's policy is ``off``: nothing is recorded).

A first human open, and the first human click of each link, queue an outbox job of kind
``KIND`` due ``CONFIRM_AFTER`` later (only when webhooks are configured).
``confirm_job`` then emits ``message.opened`` / ``link.clicked`` if that hit is still a
person's and no earlier hit of the same kind is — by then a burst can no longer make it a
machine's —, and notes it on the row (``notified``) in the same transaction: a webhook
fires for the first human hit only, once, even when the job runs twice.

``create(s, plan, links, send_id, …)`` writes a message's record when the send is
recorded (``compose.send``); ``transmitted(s, send_id, at)`` notes each time a server
accepted it (the ``too-soon`` rule counts from the latest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from bccd.store import events, outbox
from bccd.store.db import Database
from bccd.store.models import Message, utcnow
from bccd.store.models_compose import Send
from bccd.store.models_tracking import DECOY, Tracking, TrackingHit
from bccd.tracking import rules
from bccd.tracking.links import Plan
from bccd.tracking.tokens import Claim

KIND = "tracking_event"
CONFIRM_AFTER = dt.timedelta(seconds=3)   # beyond rules.BURST: the hit's kind is final then
MAX_AGENT = 512                            # characters of a user agent the rules look at


@dataclass(frozen=True, slots=True)
class Hit:
    claim: Claim
    method: str = "GET"
    user_agent: str = ""
    purpose: str = ""
    session_hash: str | None = None      # the hash of a bccd session cookie it carried


@dataclass(frozen=True, slots=True)
class Outcome:
    found: bool
    url: str | None = None               # a link's target (None: the pixel, the decoy)
    kind: str | None = None              # human | machine; None: not recorded
    code: str | None = None
    reclassified: bool = False           # a burst made the click before it a machine's


NOT_FOUND = Outcome(False)
SenderCheck = Callable[[Session, str, int], bool]   # (session, cookie hash, user id)


def create(s: Session, plan: Plan, links: list[str], *, send_id: int, user_id: int,
           company_id: int) -> None:
    s.add(Tracking(id=plan.tracking_id, send_id=send_id, user_id=user_id,
                   company_id=company_id, opens=plan.opens, clicks=plan.clicks, active=True,
                   links=list(links), link_counts=[[0, 0] for _ in links], notified=[],
                   created_at=dt.datetime.fromtimestamp(plan.issued, dt.UTC)))


def transmitted(s: Session, send_id: int, at: dt.datetime) -> None:
    s.execute(update(Tracking).where(Tracking.send_id == send_id).values(sent_at=at))


def _seconds(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else (now - then).total_seconds()


def record(s: Session, hit: Hit, is_sender: SenderCheck) -> Outcome:
    claim = hit.claim
    row = s.get(Tracking, claim.tracking_id, with_for_update=True)
    what = rules.OPEN if claim.kind == "o" else rules.CLICK
    if row is None or not (row.opens if what == rules.OPEN else row.clicks):
        return NOT_FOUND
    url: str | None = None
    if what == rules.CLICK and claim.link != DECOY:
        if not 0 <= claim.link < len(row.links):
            return NOT_FOUND
        url = str(row.links[claim.link])
    if not row.active:
        return Outcome(True, url)
    now = utcnow()
    last = row.last_click_link
    facts = rules.Facts(
        what=what, method=hit.method, user_agent=hit.user_agent[:MAX_AGENT],
        purpose=hit.purpose[:MAX_AGENT],
        sender_session=hit.session_hash is not None and is_sender(s, hit.session_hash,
                                                                  row.user_id),
        link=claim.link if what == rules.CLICK else None,
        since_sent=_seconds(now, row.sent_at or row.created_at),
        since_other_click=_seconds(now, row.last_click_at) if last is not None
        and last != claim.link else None,
        since_same_click=_seconds(now, row.last_click_at) if last == claim.link else None)
    verdict = rules.classify(facts)
    human = verdict.kind == rules.HUMAN
    hit_id = int(s.connection().execute(insert(TrackingHit).returning(TrackingHit.id), {
        "tracking_id": row.id, "at": now, "link": facts.link, "kind": verdict.kind,
        "reason": verdict.code}).scalar_one())
    first = reclassified = False
    if what == rules.OPEN:
        if human:
            row.opens_human += 1
            first = row.first_human_open_at is None
            row.first_human_open_at = row.first_human_open_at or now
        else:
            row.opens_machine += 1
    else:
        counts = [list(c) for c in row.link_counts]
        if claim.link == DECOY:
            row.decoy_hits += 1
        else:
            first = human and counts[claim.link][0] == 0
            counts[claim.link][0 if human else 1] += 1
        if verdict.code == "burst" and row.last_click_hit is not None:
            reclassified = _unmask(s, row.last_click_hit, counts)
        row.link_counts = counts
        row.last_click_at, row.last_click_link, row.last_click_hit = now, claim.link, hit_id
    if first and events.enabled(s):
        outbox.enqueue(s, KIND, {"tracking_id": row.id, "hit_id": hit_id,
                                 "user_id": row.user_id, "company_id": row.company_id},
                       not_before=now + CONFIRM_AFTER)
    return Outcome(True, url, verdict.kind, verdict.code, reclassified)


def _unmask(s: Session, hit_id: int, counts: list[list[int]]) -> bool:
    """The click before a burst was the burst's first: a machine's too."""
    prev = s.get(TrackingHit, hit_id)
    if prev is None or prev.kind != rules.HUMAN or prev.link is None or prev.link == DECOY:
        return False
    prev.kind, prev.reason = rules.MACHINE, "burst"
    if 0 <= prev.link < len(counts):
        counts[prev.link][0] = max(0, counts[prev.link][0] - 1)
        counts[prev.link][1] += 1
    return True


# ------------------------------------------------------------------ the webhooks
async def confirm_job(db: Database, payload: dict[str, Any]) -> None:
    """The outbox handler of kind ``KIND`` (module docstring)."""
    await db.run(_confirm, db, int(payload["tracking_id"]), int(payload["hit_id"]))


def _confirm(db: Database, tracking_id: int, hit_id: int) -> None:
    with db.transaction() as s:
        hit = s.get(TrackingHit, hit_id)
        row = s.get(Tracking, tracking_id, with_for_update=True)
        if hit is None or row is None or hit.tracking_id != row.id or hit.kind != rules.HUMAN:
            return
        key: str | int = "open" if hit.link is None else hit.link
        if key in row.notified:
            return  # sent already (a job run twice: the outbox delivers at least once)
        same = TrackingHit.link.is_(None) if hit.link is None else TrackingHit.link == hit.link
        earlier = s.scalar(select(TrackingHit.id).where(
            TrackingHit.tracking_id == row.id, TrackingHit.kind == rules.HUMAN, same,
            TrackingHit.id < hit.id).limit(1))
        if earlier is not None:
            return
        send = s.get(Send, row.send_id)
        if send is None:
            return
        thread_id = (s.scalar(select(Message.thread_id).where(Message.id == send.message_id))
                     if send.message_id is not None else None)
        row.notified = [*row.notified, key]
        data: dict[str, Any] = {"id": send.message_id, "message_id": send.rfc_message_id,
                                "thread_id": thread_id, "at": hit.at.isoformat()}
        if hit.link is None:
            events.tracking_hit(s, "message.opened", data, user_id=row.user_id)
        else:
            data |= {"link": hit.link, "url": str(row.links[hit.link])
                     if 0 <= hit.link < len(row.links) else None}
            events.tracking_hit(s, "link.clicked", data, user_id=row.user_id)
