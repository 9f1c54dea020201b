"""Meetings read from calendar invites (SPEC §5.13). Part of ``bccd.store.models`` (which
re-exports it); a module of its own to keep each file to one responsibility.

A meeting is the user's (``user_id``, ``uid`` unique): each user's mail is their own, as
their threads are. ``thread_id`` is the conversation it was first filed in (a thread merged
into another takes its meetings along, ``linking.threading.merge``); deleting the thread
deletes it. Times are kept in UTC with the offset of the event's own time zone at that
moment (``start_offset``, minutes), so the local time the organizer chose is shown exactly,
whatever time zone definitions the invite carried.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import Base, _fk, _pk, utcnow


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        UniqueConstraint("user_id", "uid"),
        CheckConstraint("status IN ('confirmed', 'tentative', 'cancelled')", name="status"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    user_id: Mapped[int] = _fk("users.id", index=False)
    thread_id: Mapped[int] = _fk("threads.id")
    uid: Mapped[str] = mapped_column(String(998))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[str] = mapped_column(String(16))        # of the last change: REQUEST …
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    summary: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(Text, default="")
    start_at: Mapped[dt.datetime | None]
    end_at: Mapped[dt.datetime | None]
    start_offset: Mapped[int] = mapped_column(Integer, default=0)  # minutes east of UTC
    end_offset: Mapped[int] = mapped_column(Integer, default=0)
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    timezone: Mapped[str] = mapped_column(String(255), default="")  # the invite's TZID
    organizer: Mapped[str] = mapped_column(String(320), default="")
    organizer_name: Mapped[str] = mapped_column(Text, default="")
    attendees: Mapped[list[Any]] = mapped_column(default=list)  # [{email, name, answer}]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def as_json(self) -> dict[str, Any]:
        """The meeting as the thread JSON (``meeting``) and ``meeting.updated`` show it:
        times in the event's own offset (a date for an all-day event)."""
        return {
            "uid": self.uid, "summary": self.summary, "location": self.location,
            "start": _when(self.start_at, self.start_offset, self.all_day),
            "end": _when(self.end_at, self.end_offset, self.all_day),
            "all_day": self.all_day, "timezone": self.timezone or None,
            "organizer": self.organizer or None, "organizer_name": self.organizer_name,
            "attendees": [dict(a) for a in self.attendees or []],
            "status": self.status, "sequence": self.sequence, "method": self.method,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def _when(at: dt.datetime | None, offset: int, all_day: bool) -> str | None:
    if at is None:
        return None
    if all_day:
        return at.astimezone(dt.UTC).date().isoformat()
    return at.astimezone(dt.timezone(dt.timedelta(minutes=offset))).isoformat()
