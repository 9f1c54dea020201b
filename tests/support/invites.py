"""Calendar invites as Outlook/Exchange and Google Calendar write them (SPEC §5.13), and
broken ones: ``ics(...)`` builds a VCALENDAR, ``invite_mail(...)`` wraps it the way both
send it (``multipart/alternative`` with a ``text/calendar; method=…`` part, plus an
``.ics`` attachment for Google)."""

from __future__ import annotations

import uuid

OUTLOOK_TZ = """BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
"""


def ics(method: str, *, uid: str = "kickoff-1@client.test", sequence: int = 0,
        organizer: str = "bob@client.test", attendees: dict[str, str] | None = None,
        start: str = "DTSTART;TZID=W. Europe Standard Time:20260710T100000",
        end: str = "DTEND;TZID=W. Europe Standard Time:20260710T110000",
        summary: str = "Kickoff", status: str | None = None, outlook_tz: bool = True,
        extra: str = "") -> str:
    people = attendees if attendees is not None else {"alice@corp.test": "NEEDS-ACTION",
                                                     "bob@client.test": "ACCEPTED"}
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
             "VERSION:2.0", f"METHOD:{method}"]
    body = "\n".join(lines) + "\n" + (OUTLOOK_TZ if outlook_tz else "")
    ev = ["BEGIN:VEVENT", f"ORGANIZER;CN={organizer.split('@')[0].title()}:mailto:{organizer}"]
    ev += [f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT={a};RSVP=TRUE;CN={e.split('@')[0].title()}:"
           f"mailto:{e}" for e, a in people.items()]
    ev += [f"SUMMARY;LANGUAGE=en-US:{summary}"] if summary else []
    ev += [line for line in (start, end) if line]
    ev += ([f"UID:{uid}"] if uid else []) + [f"SEQUENCE:{sequence}", "DTSTAMP:20261126T090000Z"]
    ev += [f"STATUS:{status}"] if status else []
    ev += ["LOCATION:Room 4", *([extra] if extra else []), "END:VEVENT", "END:VCALENDAR"]
    return (body + "\n".join(ev) + "\n").replace("\n", "\r\n")


def invite_mail(frm: str, to: str, calendar: str, *, method: str = "REQUEST",
                subject: str = "Invitation: Kickoff", message_id: str | None = None,
                in_reply_to: str | None = None, attachment: bool = False) -> bytes:
    b = f"b{uuid.uuid4().hex}"
    mid = message_id or f"<{uuid.uuid4().hex}@{frm.rpartition('@')[2].rstrip('>')}>"
    refs = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    parts = [f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n",
             f"--{b}\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n"
             f"Content-Transfer-Encoding: 8bit\r\n\r\n{calendar}"]
    if attachment:
        parts.append(f"--{b}\r\nContent-Type: application/ics; name=invite.ics\r\n"
                     f"Content-Disposition: attachment; filename=invite.ics\r\n\r\n{calendar}")
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 09:00:00 "
            f"+0000\r\nMessage-ID: {mid}\r\n{refs}MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n"
            + "".join(parts) + f"--{b}--\r\n").encode()
