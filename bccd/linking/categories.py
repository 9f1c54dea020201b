"""The vocabulary of message categories (SPEC §5.10) as the linking layer and the read
model use it; which category a message gets is decided by ``ingest.categorize``.

``ORDER`` ranks them from the most human to the least: a thread's category is the most
human of its messages' (``thread_category``), so a conversation the user had with a
customer stays ``person`` when an out-of-office reply or a bounce joins it, and a thread
made only of newsletters is ``bulk``. ``HUMAN`` are the categories the Mail page shows
when "Hide automated" is ticked.

``AUTOMATED`` are the categories the company setting ``automated_mail`` governs;
``INTERNAL`` the one ``internal_mail`` governs. A bounce is never dropped and never
linked on its own: it joins the thread of the message it returns (``ingest.triage``).
"""

from __future__ import annotations

PERSON = "person"
INTERNAL = "internal"
BOUNCE = "bounce"
AUTO_REPLY = "auto_reply"
BULK = "bulk"

ORDER = (PERSON, INTERNAL, BOUNCE, AUTO_REPLY, BULK)   # most human first
CATEGORIES = ORDER
AUTOMATED = (AUTO_REPLY, BULK)
HUMAN = (PERSON, INTERNAL)
RANK = {c: i for i, c in enumerate(ORDER)}

AUTOMATED_MAIL = ("unlinked", "store", "drop")     # company setting, default "unlinked"
INTERNAL_MAIL = ("store", "drop")                  # company setting, default "store"


def thread_category(current: str, joining: str) -> str:
    """The category of a thread ``current`` once a message of ``joining`` joins it."""
    return joining if RANK.get(joining, 0) < RANK.get(current, 0) else current


def parse_list(value: str | None) -> tuple[str, ...]:
    """``"person,internal"`` → ``("person", "internal")``; ``ValueError`` naming an
    unknown one. Empty → ``()``."""
    out: list[str] = []
    for part in (value or "").split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in CATEGORIES:
            raise ValueError(f"unknown category {name!r} (one of {', '.join(CATEGORIES)})")
        if name not in out:
            out.append(name)
    return tuple(out)
