"""Calendar invites (SPEC §5.13): a ``text/calendar`` part read with ``icalendar`` into an
``Invite`` — or the reason it cannot be, which never refuses the mail (it is filed as
plain mail and the reason logged).

``read(data)`` → ``Invite | str``. What is read: the calendar's METHOD (``REQUEST``,
``REPLY``, ``CANCEL``; another method, or none, is not an invite), and its first VEVENT
without a RECURRENCE-ID (else its first VEVENT): UID, SEQUENCE, SUMMARY, LOCATION,
DTSTART, DTEND (or DURATION), STATUS, ORGANIZER and ATTENDEEs with their PARTSTAT.

Time zones: a DTSTART with a TZID is resolved by icalendar — against the invite's own
VTIMEZONE (Outlook's "W. Europe Standard Time") or the IANA database — and kept as the
instant (UTC) plus that zone's offset at that instant, so the organizer's local time
is shown as it was written. A floating time (no zone) is taken as UTC; an all-day event
(a DATE) has ``all_day`` set and its dates at midnight UTC.

Refused (the reason returned): a part over ``MAX_BYTES``, one icalendar cannot parse, no
VEVENT, no UID, a DTSTART that is not a date or time (or missing from a REQUEST), an end
before the start. CPU work: ``ingest.parse`` calls it in its worker thread, under the
parse budget.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bccd.addresses import try_normalize_email

MAX_BYTES = 512 * 1024
METHODS = ("REQUEST", "REPLY", "CANCEL")
ANSWERS = ("needs-action", "accepted", "declined", "tentative", "delegated")
STATUSES = {"CONFIRMED": "confirmed", "TENTATIVE": "tentative", "CANCELLED": "cancelled"}


@dataclass(frozen=True, slots=True)
class Attendee:
    email: str
    name: str
    answer: str          # one of ANSWERS


@dataclass(frozen=True, slots=True)
class When:
    at: dt.datetime      # UTC
    offset: int          # minutes east of UTC in the event's zone at that instant
    all_day: bool


@dataclass(frozen=True, slots=True)
class Invite:
    method: str          # REQUEST | REPLY | CANCEL
    uid: str
    sequence: int
    summary: str
    location: str
    start: When | None
    end: When | None
    timezone: str        # the DTSTART's TZID ("" when UTC or floating)
    status: str          # confirmed | tentative | cancelled
    organizer: Attendee | None
    attendees: tuple[Attendee, ...]


def read(data: bytes) -> Invite | str:
    if len(data) > MAX_BYTES:
        return f"text/calendar part of {len(data)} bytes is over {MAX_BYTES}"
    try:
        import icalendar

        cal = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # noqa: BLE001 - whatever a broken calendar raises
        return f"the calendar does not parse: {type(exc).__name__}"
    method = _text(cal.get("method")).upper()
    if method not in METHODS:
        return f"calendar method {method or 'none'} is not an invite, a reply or a cancellation"
    events = [c for c in cal.walk("VEVENT")]
    if not events:
        return "the calendar has no event"
    ev = next((e for e in events if e.get("recurrence-id") is None), events[0])
    uid = _text(ev.get("uid"))[:998]
    if not uid:
        return "the event has no UID"
    try:
        start = _when(ev, "dtstart")
        end = _when(ev, "dtend")
        if end is None and start is not None:
            end = _plus_duration(ev, start)
    except _BadDate as exc:
        return str(exc)
    if start is None and method == "REQUEST":
        return "the event has no DTSTART"
    if start is not None and end is not None and end.at < start.at:
        return "the event ends before it starts"
    try:
        sequence = int(str(ev.get("sequence") or 0))
    except ValueError:
        return "the event's SEQUENCE is not a number"
    tzid = ev.get("dtstart").params.get("TZID", "") if ev.get("dtstart") is not None else ""
    status = STATUSES.get(_text(ev.get("status")).upper(),
                          "cancelled" if method == "CANCEL" else "confirmed")
    return Invite(method=method, uid=uid, sequence=max(0, sequence),
                  summary=_text(ev.get("summary"))[:2000],
                  location=_text(ev.get("location"))[:2000], start=start, end=end,
                  timezone=no_nul(str(tzid))[:255], status=status, organizer=_person(ev.get("organizer")),
                  attendees=tuple(a for a in (_person(x) for x in _list(ev.get("attendee")))
                                  if a is not None)[:500])


class _BadDate(ValueError):
    pass


def no_nul(text: str) -> str:
    """NUL as U+FFFD, like an undecodable byte: a NUL in a stored text (a body, a subject,
    a name, an invitation's summary — from an encoded word, quoted-printable ``=00``,
    base64 or a synced message's raw bytes) is refused by PostgreSQL's text columns, and
    it means nothing to a reader. The raw message keeps its bytes."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _text(value: Any) -> str:
    return no_nul(" ".join(str(value).split())) if value is not None else ""


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _person(value: Any) -> Attendee | None:
    if value is None:
        return None
    raw = str(value).strip()
    addr = try_normalize_email(raw[7:] if raw.lower().startswith("mailto:") else raw)
    if addr is None:
        return None
    params = getattr(value, "params", {}) or {}
    answer = str(params.get("PARTSTAT", "NEEDS-ACTION")).lower()
    return Attendee(addr, _text(params.get("CN", ""))[:255].strip('"'),
                    answer if answer in ANSWERS else "needs-action")


def _when(ev: Any, name: str) -> When | None:
    if ev.get(name) is None:
        return None
    try:
        value = ev.decoded(name)
    except Exception as exc:  # noqa: BLE001
        raise _BadDate(f"the event's {name.upper()} is not a date: {type(exc).__name__}") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=dt.UTC)  # floating: taken as UTC
        try:
            offset = value.utcoffset()
            at = value.astimezone(dt.UTC)
        except (OverflowError, ValueError) as exc:
            raise _BadDate(f"the event's {name.upper()} is out of range") from exc
        return When(at, int((offset or dt.timedelta()).total_seconds() // 60), False)
    if isinstance(value, dt.date):
        return When(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC), 0, True)
    raise _BadDate(f"the event's {name.upper()} is not a date or time")


def _plus_duration(ev: Any, start: When) -> When | None:
    try:
        dur = ev.decoded("duration") if ev.get("duration") is not None else None
    except Exception:  # noqa: BLE001
        dur = None
    if isinstance(dur, dt.timedelta):
        return When(start.at + dur, start.offset, start.all_day)
    if start.all_day:
        return When(start.at + dt.timedelta(days=1), 0, True)
    return None
