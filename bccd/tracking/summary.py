"""What tracking shows about a message (SPEC §13), for the read model (``mailstore.read``):

- ``for_messages(s, ids)`` → ``{message id: tracking}`` for the messages among ``ids``
  that were sent from bccd with tracking — ``{opens: {human, machine, first_human_at} |
  None, clicks: [{url, human, machine}] | None, hidden_link}`` (``opens``/``clicks`` None:
  not tracked; ``hidden_link``: how often software followed the hidden decoy link).
  Messages without tracking (Bcc and synced copies among them) are not in the answer:
  their ``tracking`` is ``null``. One query for the lot.
- ``recent_hits(s, message_id)`` → the message's latest hits, newest first, each
  ``{at, what, url, kind, code, reason}`` with the rule's sentence — what the Mail page
  lists under "why".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.store.models_compose import Send
from bccd.store.models_tracking import DECOY, Tracking, TrackingHit
from bccd.tracking import rules

RECENT = 30


def shape(row: Tracking) -> dict[str, Any]:
    first = row.first_human_open_at
    return {
        "opens": {"human": row.opens_human, "machine": row.opens_machine,
                  "first_human_at": first.isoformat() if first else None} if row.opens else None,
        "clicks": [{"url": str(url), "human": int(c[0]), "machine": int(c[1])}
                   for url, c in zip(row.links, row.link_counts, strict=False)]
        if row.clicks else None,
        "hidden_link": row.decoy_hits,
    }


def for_messages(s: Session, message_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = list(message_ids)
    if not ids:
        return {}
    rows = s.execute(select(Send.message_id, Tracking).join(Tracking, Tracking.send_id == Send.id)
                     .where(Send.message_id.in_(ids))).tuples().all()
    return {int(mid): shape(row) for mid, row in rows if mid is not None}


def recent_hits(s: Session, message_id: int, *, limit: int = RECENT) -> list[dict[str, Any]]:
    row = s.scalar(select(Tracking).join(Send, Send.id == Tracking.send_id)
                   .where(Send.message_id == message_id))
    if row is None:
        return []
    hits = s.scalars(select(TrackingHit).where(TrackingHit.tracking_id == row.id)
                     .order_by(TrackingHit.id.desc()).limit(limit))
    out = []
    for h in hits:
        url = (str(row.links[h.link]) if h.link is not None and 0 <= h.link < len(row.links)
               else None)
        out.append({"at": h.at.isoformat(), "what": "open" if h.link is None else "click",
                    "url": url, "hidden": h.link == DECOY, "kind": h.kind, "code": h.reason,
                    "reason": rules.REASONS.get(h.reason, h.reason)})
    return out
