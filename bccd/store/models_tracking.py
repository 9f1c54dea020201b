"""The tables of open and click tracking (SPEC §13), beside ``store.models`` (same metadata).

- ``Tracking``: one message sent from bccd with tracking on. Its ``id`` is random (63
  bits) and is what the tracking tokens name — so a token says nothing about how many
  messages bccd sent. It keeps what a hit needs and nothing else, so that recording a hit
  reads and updates this one row (``bccd.tracking.hits``): the sender, whether opens
  and clicks are tracked, the company's policy (``active``: ``tracking = off`` stops the
  recording of hits on messages already sent, their links still redirect), the links the
  click tokens stand for (``links``: index → URL; the only place a redirect's target comes
  from), when it went out (``sent_at``: the latest transmission a server accepted), the
  counts the message JSON shows (``opens_human``, ``opens_machine``,
  ``first_human_open_at``, ``link_counts``: per link ``[human, machine]``,
  ``decoy_hits``), the last click (for the rule "all of a message's links within a
  second") and which first-hit webhooks were sent (``notified``: each once). It goes
  with its send, and so with its message.
- ``TrackingHit``: one request for the pixel or a link: when, which (``link`` None for
  the pixel, -1 for the decoy), ``kind`` (``human`` | ``machine``) and ``reason`` (a code
  of ``bccd.tracking.rules``). No IP address and no user agent is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import ID, Base, utcnow

HIT_KINDS = ("human", "machine")
DECOY = -1          # TrackingHit.link of the hidden decoy link


class Tracking(Base):
    __tablename__ = "tracking"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=False)
    send_id: Mapped[int] = mapped_column(ID, ForeignKey("sends.id", ondelete="CASCADE"),
                                         unique=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    company_id: Mapped[int] = mapped_column(ID, ForeignKey("companies.id", ondelete="CASCADE"),
                                            index=True)
    opens: Mapped[bool] = mapped_column(Boolean)
    clicks: Mapped[bool] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    links: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    opens_human: Mapped[int] = mapped_column(Integer, default=0)
    opens_machine: Mapped[int] = mapped_column(Integer, default=0)
    first_human_open_at: Mapped[dt.datetime | None]
    link_counts: Mapped[list[Any]] = mapped_column(default=list)
    decoy_hits: Mapped[int] = mapped_column(Integer, default=0)
    last_click_at: Mapped[dt.datetime | None]
    last_click_link: Mapped[int | None] = mapped_column(Integer)
    last_click_hit: Mapped[int | None] = mapped_column(ID)
    # the webhooks sent: "open", and each link's index — each is sent once
    notified: Mapped[list[Any]] = mapped_column(default=list)


class TrackingHit(Base):
    __tablename__ = "tracking_hits"
    __table_args__ = (
        CheckConstraint("kind IN ('human', 'machine')", name="kind"),
        Index(None, "tracking_id", "kind", "link"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    tracking_id: Mapped[int] = mapped_column(ID, ForeignKey("tracking.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    link: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(32))
