"""Calendar invites read by the parser with icalendar (SPEC §5.13): Outlook's own
VTIMEZONE, IANA zones, UTC, all-day and floating times, REPLY and CANCEL — and broken
calendars, which never refuse the mail: the reason is kept and the mail is plain mail."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from bccd.ingest.parse import Parsed, parse
from tests.support.invites import ics, invite_mail

pytestmark = pytest.mark.spec("5.13")

BOB, ALICE = "Bob Client <bob@client.test>", "alice@corp.test"


def parsed(calendar: str, **kw: Any) -> Parsed:
    return parse(invite_mail(BOB, ALICE, calendar, **kw), max_header_size=512 * 1024)


def test_an_outlook_request_keeps_the_organizers_local_time() -> None:
    p = parsed(ics("REQUEST"))
    inv = p.invite
    assert inv is not None and p.calendar_problems == []
    assert (inv.method, inv.uid, inv.sequence, inv.summary, inv.location) == (
        "REQUEST", "kickoff-1@client.test", 0, "Kickoff", "Room 4")
    # 10:00 in W. Europe in July is CEST, UTC+2 — from the invite's own VTIMEZONE
    assert inv.start is not None and inv.end is not None
    assert inv.start.at == dt.datetime(2026, 7, 10, 8, 0, tzinfo=dt.UTC)
    assert inv.start.offset == 120 and not inv.start.all_day
    assert inv.end.at - inv.start.at == dt.timedelta(hours=1)
    assert inv.timezone == "W. Europe Standard Time"
    assert inv.organizer is not None and inv.organizer.email == "bob@client.test"
    assert {(a.email, a.answer) for a in inv.attendees} == {
        ("alice@corp.test", "needs-action"), ("bob@client.test", "accepted")}
    assert inv.status == "confirmed"


def test_winter_time_of_the_same_zone_is_an_hour_less() -> None:
    inv = parsed(ics("REQUEST", start="DTSTART;TZID=W. Europe Standard Time:20261210T100000",
                     end="DTEND;TZID=W. Europe Standard Time:20261210T110000")).invite
    assert inv is not None and inv.start is not None
    assert (inv.start.at.hour, inv.start.offset) == (9, 60)


def test_iana_zone_utc_and_duration() -> None:
    inv = parsed(ics("REQUEST", outlook_tz=False,
                     start="DTSTART;TZID=America/New_York:20260301T090000",
                     end="DURATION:PT30M")).invite
    assert inv is not None and inv.start is not None and inv.end is not None
    assert inv.start.at == dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.UTC)
    assert inv.start.offset == -300
    assert inv.end.at - inv.start.at == dt.timedelta(minutes=30)
    utc = parsed(ics("REQUEST", outlook_tz=False, start="DTSTART:20260301T090000Z",
                     end="DTEND:20260301T100000Z")).invite
    assert utc is not None and utc.start is not None
    assert (utc.start.at.hour, utc.start.offset, utc.timezone) == (9, 0, "")


def test_all_day_and_floating_times() -> None:
    day = parsed(ics("REQUEST", outlook_tz=False, start="DTSTART;VALUE=DATE:20260704",
                     end="")).invite
    assert day is not None and day.start is not None and day.end is not None
    assert day.start.all_day and day.start.at == dt.datetime(2026, 7, 4, tzinfo=dt.UTC)
    assert day.end.at == dt.datetime(2026, 7, 5, tzinfo=dt.UTC)
    floating = parsed(ics("REQUEST", outlook_tz=False, start="DTSTART:20260704T150000",
                          end="")).invite
    assert floating is not None and floating.start is not None
    assert floating.start.at == dt.datetime(2026, 7, 4, 15, tzinfo=dt.UTC)


def test_reply_and_cancel() -> None:
    reply = parsed(ics("REPLY", attendees={"bob@client.test": "DECLINED"}), method="REPLY").invite
    assert reply is not None and reply.method == "REPLY"
    assert [(a.email, a.answer) for a in reply.attendees] == [("bob@client.test", "declined")]
    cancel = parsed(ics("CANCEL", sequence=2), method="CANCEL").invite
    assert cancel is not None and (cancel.method, cancel.sequence, cancel.status) == (
        "CANCEL", 2, "cancelled")


def test_google_sends_the_calendar_twice_the_first_is_read() -> None:
    p = parsed(ics("REQUEST", outlook_tz=False, start="DTSTART:20260301T090000Z",
                   end="DTEND:20260301T100000Z"), attachment=True)
    assert p.invite is not None and p.calendar_problems == []
    assert [a.filename for a in p.attachments] == ["invite.ics"]


@pytest.mark.parametrize("calendar, problem", [
    (ics("REQUEST", start="DTSTART;TZID=W. Europe Standard Time:2026-13-45"), "DTSTART"),
    (ics("REQUEST", uid=""), "no UID"),
    (ics("REQUEST", start=""), "no DTSTART"),
    (ics("REQUEST", start="DTSTART:20260710T120000Z", end="DTEND:20260710T100000Z"),
     "ends before it starts"),
    (ics("PUBLISH"), "not an invite"),
    ("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nthis is not a calendar", "does not parse"),
    ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n", "no event"),
])
def test_a_broken_calendar_is_plain_mail_with_the_reason(calendar: str, problem: str) -> None:
    p = parsed(calendar)
    assert p.invite is None
    assert len(p.calendar_problems) == 1 and problem in p.calendar_problems[0]
    assert p.text.startswith("You are invited")


def test_a_10_mb_calendar_is_not_read_and_costs_nothing() -> None:
    huge = ics("REQUEST", extra="DESCRIPTION:" + "x" * (10 * 1024 * 1024))
    start = time.monotonic()
    p = parsed(huge)
    assert time.monotonic() - start < 5
    assert p.invite is None and "over" in p.calendar_problems[0]


def test_a_nul_in_the_invitation_becomes_the_replacement_character() -> None:
    """PostgreSQL's text columns refuse U+0000: the summary and UID are stored without it."""
    inv = parsed(ics("REQUEST", uid="kick\x00off@client.test", summary="Kick\x00off")).invite
    assert inv is not None
    assert (inv.uid, inv.summary) == ("kick\ufffdoff@client.test", "Kick\ufffdoff")
