"""What a user does to a thread by hand (SPEC §8 ``mail link|unlink|set|archive|delete``),
for the CLI, the JSON API and the Mail page alike.

Each function takes an open session (one transaction), the acting user (``None`` for the
operator, bound by nothing but company boundaries) and the thread id; the rules are
``linking.manual``'s, and the side effects go with them in the same transaction: the
``thread.linked`` event of a new link (``linking``), the write-back jobs of archiving or
deleting a thread (``mailboxes.writeback``, planned *before* its messages go), the
automatic organization links that follow a person linked or unlinked by hand
(``linking.organizations``, SPEC §5.11). Link changes return the thread's listing row as
the actor now sees it (with its ``link_state``). Choosing one of a thread's suggestions is
``link`` with that item: it is linked ``how = manual`` and the other suggestions go.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bccd.linking import manual, organizations
from bccd.mailboxes.writeback import enqueue_writeback
from bccd.mailstore import read
from bccd.store.models import User


def _row(s: Session, thread_id: int, actor: User | None) -> dict[str, Any]:
    s.flush()
    if actor is not None:
        return read.summary(s, thread_id, actor)
    shown = read.show_thread(s, manual.get_thread(s, thread_id, None), None)
    return {k: shown[k] for k in ("thread_id", "subject", "visibility", "owner", "archived",
                                  "links", "suggestions", "link_state")}


def link(s: Session, actor: User | None, thread_id: int, kind: str, entity_id: int) -> dict[str, Any]:
    thread = manual.get_thread(s, thread_id, actor)
    manual.link(s, thread, kind, entity_id, actor)
    if kind == "person":
        organizations.sync(s, [thread.id])
    return _row(s, thread.id, actor)


def unlink(s: Session, actor: User | None, thread_id: int, kind: str,
           entity_id: int) -> dict[str, Any]:
    thread = manual.get_thread(s, thread_id, actor)
    manual.unlink(s, thread, kind, entity_id, actor)
    if kind == "person":
        organizations.sync(s, [thread.id])
    return _row(s, thread.id, actor)


def set_visibility(s: Session, actor: User | None, thread_id: int, value: str) -> dict[str, Any]:
    thread = manual.get_thread(s, thread_id, actor)
    manual.set_visibility(s, thread, value, actor)
    return _row(s, thread.id, actor)


def archive(s: Session, actor: User | None, thread_id: int) -> dict[str, Any]:
    thread = manual.get_thread(s, thread_id, actor)
    manual.archive(s, thread, actor)
    jobs = enqueue_writeback(s, thread.id, "archive")
    return {"thread_id": thread.id, "archived": True, "writeback_jobs": len(jobs)}


def delete(s: Session, actor: User | None, thread_id: int) -> dict[str, Any]:
    thread = manual.get_thread(s, thread_id, actor)
    manual.owner_only(thread, actor)  # before the write-back is planned
    jobs = enqueue_writeback(s, thread.id, "delete")
    messages = manual.delete_thread(s, thread, actor)
    return {"thread_id": thread_id, "deleted": True, "messages": messages,
            "writeback_jobs": len(jobs)}
