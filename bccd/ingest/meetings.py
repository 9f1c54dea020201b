"""Meetings from calendar invites (SPEC §5.13), written with the message that carries the
invite, in filing's transaction.

``apply(session, invite, owner=…, thread_id=…, message_id=…, sender=…)`` → what happened
(``created``, ``updated``, ``answered``, ``cancelled``) or ``None`` when nothing changed,
with the reason logged. A meeting is the user's, by UID (``store.meeting_models``):

- ``REQUEST`` creates the meeting, or updates it (summary, times, place, organizer,
  attendees): an attendee whose answer the request leaves ``needs-action`` at the same
  SEQUENCE keeps the answer already stored (the organizer's client re-sending the invite
  does not forget who accepted); a new SEQUENCE takes the request's answers (the organizer
  changed the meeting, answers start again, RFC 5546).
- ``REPLY`` sets the answer of the attendee it is from — the message's sender must be
  that attendee (an answer is believed from the attendee's own address); a reply whose
  meeting is not stored yet creates it from what the reply carries.
- ``CANCEL`` marks the meeting ``cancelled``.
- A SEQUENCE older than the stored one changes nothing (a late, superseded message); an
  update of a stored meeting's REQUEST or CANCEL must come from its organizer (or the
  user) — anyone else's is ignored.

Each change is a ``meeting.updated`` event (``store.events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.ingest.calendar import Attendee, Invite
from bccd.log import get_logger
from bccd.store import events
from bccd.store.models import Meeting, utcnow
from bccd.store.queries import insert_ignore_returning

log = get_logger("bccd.ingest")


@dataclass(frozen=True, slots=True)
class Owner:
    user_id: int
    company_id: int
    email: str           # the user's login
    company_slug: str


def apply(session: Session, invite: Invite, *, owner: Owner, thread_id: int, message_id: int,
          sender: str) -> str | None:
    meeting = session.scalar(select(Meeting).where(Meeting.user_id == owner.user_id,
                                                   Meeting.uid == invite.uid))
    if meeting is None:
        meeting, change = _create(session, invite, owner, thread_id, sender)
    else:
        change = _update(meeting, invite, owner, sender)
    if change is None:
        return None
    meeting.updated_at = utcnow()
    events.meeting_updated(session, meeting, message_id=message_id, change=change,
                           user_email=owner.email, company_slug=owner.company_slug)
    return change


def _create(session: Session, invite: Invite, owner: Owner, thread_id: int,
            sender: str) -> tuple[Meeting, str | None]:
    attendees = _answers(invite.attendees)
    if invite.method == "REPLY":
        attendees = [a for a in attendees if a["email"] == sender] or attendees
    row = {"company_id": owner.company_id, "user_id": owner.user_id, "thread_id": thread_id,
           "uid": invite.uid, "sequence": invite.sequence, "method": invite.method,
           "created_at": utcnow(), "updated_at": utcnow(), **_fields(invite),
           "attendees": attendees}
    # a concurrent copy of the same invite (another path, same user) may create it first
    insert_ignore_returning(session, Meeting, row, "id")
    meeting = session.scalar(select(Meeting).where(Meeting.user_id == owner.user_id,
                                                   Meeting.uid == invite.uid)
                             .execution_options(populate_existing=True))
    assert meeting is not None
    return meeting, "cancelled" if invite.method == "CANCEL" else "created"


def _update(meeting: Meeting, invite: Invite, owner: Owner, sender: str) -> str | None:
    if invite.sequence < meeting.sequence:
        _ignored(meeting, invite, f"SEQUENCE {invite.sequence} is older than "
                                  f"the stored {meeting.sequence}")
        return None
    if invite.method == "REPLY":
        return _answer(meeting, invite, sender)
    if sender not in (meeting.organizer, owner.email) and meeting.organizer:
        _ignored(meeting, invite, f"{sender} is not the organizer")
        return None
    if invite.method == "CANCEL":
        meeting.status, meeting.method, meeting.sequence = "cancelled", "CANCEL", invite.sequence
        return "cancelled"
    known = {a["email"]: a["answer"] for a in meeting.attendees or []}
    same = invite.sequence == meeting.sequence
    attendees = [{**a, "answer": known[a["email"]]}
                 if same and a["answer"] == "needs-action" and a["email"] in known else a
                 for a in _answers(invite.attendees)]
    for key, value in {**_fields(invite), "attendees": attendees, "method": "REQUEST",
                       "sequence": invite.sequence}.items():
        setattr(meeting, key, value)
    return "updated"


def _answer(meeting: Meeting, invite: Invite, sender: str) -> str | None:
    mine = [a for a in invite.attendees if a.email == sender]
    if not mine:
        _ignored(meeting, invite, f"the reply is not from an attendee it names ({sender})")
        return None
    answer = mine[0]
    attendees = [dict(a) for a in meeting.attendees or []]
    for a in attendees:
        if a["email"] == answer.email:
            a["answer"] = answer.answer
            a["name"] = a.get("name") or answer.name
            break
    else:
        attendees.append(_answers([answer])[0])
    meeting.attendees = attendees  # a new list: the JSON column sees the change
    meeting.method = "REPLY"
    return "answered"


def _fields(invite: Invite) -> dict[str, Any]:
    org = invite.organizer
    return {
        "status": invite.status, "summary": invite.summary, "location": invite.location,
        "start_at": invite.start.at if invite.start else None,
        "end_at": invite.end.at if invite.end else None,
        "start_offset": invite.start.offset if invite.start else 0,
        "end_offset": invite.end.offset if invite.end else 0,
        "all_day": bool(invite.start and invite.start.all_day),
        "timezone": invite.timezone,
        "organizer": org.email if org else "", "organizer_name": org.name if org else "",
    }


def _answers(attendees: tuple[Attendee, ...] | list[Attendee]) -> list[dict[str, str]]:
    return [{"email": a.email, "name": a.name, "answer": a.answer} for a in attendees]


def _ignored(meeting: Meeting, invite: Invite, why: str) -> None:
    log.info("meeting_not_changed", uid=invite.uid[:200], method=invite.method,
             sequence=invite.sequence, meeting=meeting.id, reason=why)
