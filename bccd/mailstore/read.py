"""The one read model of the mail store (SPEC §8 ``mail list``/``mail show``, the JSON
API, the Mail page): blocking functions on an open session (callers on the event loop
run them through ``Database.run``). The CLI, the API and the page all read here.

Reads go through the one visibility rule (``linking.visibility``): listings use its SQL
form, single threads ``get_visible_thread`` / ``linking.manual.get_thread``, attachments
``mailstore.attachments`` — so a thread the user may not see is the same ``NotFound`` as
one that does not exist. Suggestions are shown only when the viewer may see the item,
and every entity name (links, suggestions, the page's filter line) comes from
``entity_names``, which names only what the viewer may see (SPEC §9): a link to an entity
of which the viewer may not know is listed by kind and id alone.

- ``list_threads(s, user, filters…, q=…, limit=…, offset=…, names=…)`` → a page
  ``{threads, limit, offset, next_offset}`` (``next_offset`` None on the last page) of
  rows in the shape of ``bccd mail list`` (SPEC §8) with each thread's ``link_state``
  (SPEC §5.12) and ``also_filed_by``; with ``names``, links and suggestions carry
  ``name`` too. ``q`` searches subjects, senders, counterpart addresses and message text
  (case-insensitive substring; every word must match); ``link_state`` keeps the threads
  in that state (``needs_choice``: awaiting a choice); ``category`` those of these
  categories (SPEC §5.10: a thread's is the most human of its messages'). A listing is one indexed query
  plus one batch per related table, whatever the company's size. A timeline — filtered
  by a person, organization, deal, lead or project — shows a message that several users
  filed once (SPEC §5.14, ``mailstore.timeline``): ``messages`` counts what it shows.
- ``count_threads(s, user, filters)`` → how many threads ``list_threads`` would list (the
  Mail page's "Needs linking" count).
- ``show_thread(s, thread, viewer)`` → ``bccd mail show``'s shape, with the thread's and
  each message's ``category`` (and ``category_reason``) and the thread's ``meeting``
  (SPEC §5.13, or ``None``); a person link named for the viewer carries
  ``bouncing: true`` when one of the person's addresses bounced;
  ``thread_detail(s, inline_url, user, id, …)`` → the same plus names, each message's
  ``raw_size`` and sanitized ``html`` (``mailstore.sanitize``; remote images only on
  request), a sent message's ``send`` state and ``tracking`` (SPEC §13,
  ``tracking.summary``; null for mail not sent from bccd with tracking). With
  ``inline_url`` (attachment id → address), ``cid:`` images point at their
  part's address — never embedded — for image parts up to ``MAX_INLINE`` bytes each and
  ``INLINE_PAGE_BYTES`` for the thread (each part counted once); the others are hidden
  and counted in the message's ``inline_hidden``.
- ``inline_part(s, user, attachment_id)`` → the attachment when it is an inline image the
  user may see (``NotFound`` otherwise).
- ``summary(s, thread_id, user)`` → one thread's listing row (after a change).
- ``raw_message`` → the stored bytes of a message the user may see.
- ``link_choices`` → the open deals, leads and projects the user may link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from bccd.accounts import parse_email_arg
from bccd.errors import NotFound
from bccd.linking import visibility
from bccd.mailstore import timeline
from bccd.mailstore.attachments import attachment_for_user
from bccd.mailstore.sanitize import MAX_INLINE, blocked_remote, clean_email_html
from bccd.store.models import (
    Attachment,
    Item,
    Link,
    Meeting,
    Message,
    MessageRaw,
    MessageSource,
    Organization,
    Participant,
    Person,
    PersonEmail,
    Suggestion,
    Thread,
    User,
)
from bccd.store.models_compose import Send
from bccd.tracking import summary as tracking_summary

MAX_TERMS = 8
INLINE_PAGE_BYTES = 20 * 1024 * 1024  # inline image bytes one conversation page may show


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _term_clause(term: str) -> Any:
    pat = _like(term)
    msg = exists().where(
        Message.thread_id == Thread.id,
        or_(func.lower(Message.subject).like(pat, escape="\\"),
            func.lower(Message.from_addr).like(pat, escape="\\"),
            func.lower(Message.from_name).like(pat, escape="\\"),
            func.lower(Message.text_body).like(pat, escape="\\"),
            exists().where(Participant.message_id == Message.id,
                           func.lower(Participant.email).like(pat, escape="\\"))))
    return or_(func.lower(Thread.subject).like(pat, escape="\\"), msg)


def entity_names(s: Session, viewer: User, refs: Iterable[tuple[str, int]]
                 ) -> dict[tuple[str, int], str]:
    """The names of the entities ``refs`` that ``viewer`` may see (SPEC §9): one query per
    kind, filtered in SQL by the one visibility rule, so an entity of another company or
    a colleague's owner-only one is simply absent — shown by its id alone."""
    by_kind: dict[str, set[int]] = defaultdict(set)
    for kind, eid in refs:
        by_kind[kind].add(eid)
    out: dict[tuple[str, int], str] = {}
    if by_kind.get("person"):
        unnamed = []
        for pid, name in s.execute(select(Person.id, Person.name).where(
                Person.id.in_(by_kind["person"]), visibility.entity_visible_clause(Person, viewer))):
            if name:
                out[("person", pid)] = name
            else:
                unnamed.append(pid)
        if unnamed:  # a (visible) person without a name is shown by an address
            for pid, email in s.execute(select(PersonEmail.person_id, func.min(PersonEmail.email))
                                        .where(PersonEmail.person_id.in_(unnamed))
                                        .group_by(PersonEmail.person_id)):
                out[("person", pid)] = email
    if by_kind.get("organization"):
        for oid, name in s.execute(select(Organization.id, Organization.name).where(
                Organization.id.in_(by_kind["organization"]),
                visibility.entity_visible_clause(Organization, viewer))):
            out[("organization", oid)] = name
    items = {i for k in ("deal", "lead", "project") for i in by_kind.get(k, ())}
    if items:
        for iid, kind, title in s.execute(select(Item.id, Item.kind, Item.title).where(
                Item.id.in_(items), visibility.entity_visible_clause(Item, viewer))):
            out[(kind, iid)] = title
    return out


def _named(rows: list[dict[str, Any]], names: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    return [{**r, "name": names.get((r["kind"], r["id"]))} for r in rows]


def _with_names(s: Session, viewer: User, threads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    refs = [(r["kind"], r["id"]) for t in threads for r in (*t["links"], *t["suggestions"])]
    names = entity_names(s, viewer, refs)
    bouncing = bouncing_persons(s, [i for k, i in names if k == "person"])
    for t in threads:
        t["links"] = _named(t["links"], names)
        t["suggestions"] = _named(t["suggestions"], names)
        for lk in t["links"]:
            if lk["kind"] == "person" and lk["id"] in bouncing:
                lk["bouncing"] = True
    return threads


def bouncing_persons(s: Session, person_ids: Iterable[int]) -> set[int]:
    """Those of these (visible) persons with an address marked bouncing (SPEC §5.10)."""
    ids = sorted(set(person_ids))
    if not ids:
        return set()
    return set(s.scalars(select(PersonEmail.person_id).where(
        PersonEmail.person_id.in_(ids), PersonEmail.bouncing_since.is_not(None)).distinct()))


def links_of(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        rows = session.scalars(select(Link).where(Link.thread_id.in_(ids)).order_by(Link.id))
        for link in rows:
            out[link.thread_id].append({"kind": link.kind, "id": link.entity_id, "how": link.how})
    return out


def suggestions_of(session: Session, ids: list[int], viewer: User | None
                   ) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        q = select(Suggestion).where(Suggestion.thread_id.in_(ids)).order_by(Suggestion.id)
        if viewer is not None:
            q = q.where(visibility.suggestion_visible_clause(viewer))
        for sug in session.scalars(q):
            out[sug.thread_id].append({"kind": sug.kind, "id": sug.entity_id})
    return out


@dataclass(frozen=True, slots=True)
class Filters:
    """Which of the threads a user may see to list: linked to these entities, matching
    the words of ``q``, archived or not (None: both), in this ``link_state`` (None: any),
    of one of these categories (SPEC §5.10; empty: any — a thread's category is the most
    human of its messages', ``linking.categories``)."""

    person: int | None = None
    deal: int | None = None
    lead: int | None = None
    project: int | None = None
    q: str = ""
    archived: bool | None = None
    organization: int | None = None
    link_state: str | None = None
    category: tuple[str, ...] = ()

    def entities(self) -> list[tuple[str, int]]:
        return [(kind, eid) for kind, eid in (("person", self.person),
                                              ("organization", self.organization),
                                              ("deal", self.deal), ("lead", self.lead),
                                              ("project", self.project))
                if eid is not None]


def _selection(user: User, filters: Filters) -> Any:
    """The ids of the threads ``user`` may see that match ``filters`` (unordered)."""
    query = select(Thread.id).where(visibility.thread_visible_clause(user))
    for kind, eid in filters.entities():
        query = query.where(exists().where(Link.thread_id == Thread.id, Link.kind == kind,
                                           Link.entity_id == eid))
    if filters.archived is not None:
        query = query.where(Thread.archived.is_(filters.archived))
    if filters.link_state is not None:
        query = query.where(Thread.link_state == filters.link_state)
    if filters.category:
        query = query.where(Thread.category.in_(filters.category))
    for term in filters.q.split()[:MAX_TERMS]:
        query = query.where(_term_clause(term))
    return query


def count_threads(s: Session, user: User, filters: Filters = Filters()) -> int:
    """How many threads ``list_threads`` lists for these filters (not collapsed)."""
    return int(s.scalar(select(func.count()).select_from(
        _selection(user, filters).subquery())) or 0)


def list_threads(
    s: Session,
    user: User,
    filters: Filters = Filters(),
    *,
    limit: int | None = 50,
    offset: int = 0,
    names: bool = True,
) -> dict[str, Any]:
    selection = _selection(user, filters)
    collapsed = None
    if filters.entities():  # a timeline: each message once (SPEC §5.14)
        collapsed = timeline.page(s, user.id, selection, limit=limit, offset=offset)
        ids, more = collapsed.ids, collapsed.more
    else:
        query = (selection.order_by(Thread.last_message_at.desc(), Thread.id.desc())
                 .offset(offset))
        if limit is not None:
            query = query.limit(limit + 1)
        ids = list(s.scalars(query))
        more = limit is not None and len(ids) > limit
        ids = ids[:limit]
    by_id = {r["thread_id"]: r for r in _rows(s, user, ids)} if ids else {}
    threads = [by_id[i] for i in ids if i in by_id]
    if collapsed is not None:
        for t in threads:
            t["messages"] = collapsed.shown.get(t["thread_id"], 0)
            t["also_filed_by"] = collapsed.also_filed_by.get(t["thread_id"], [])
    if names:
        _with_names(s, user, threads)
    return {"threads": threads, "limit": limit, "offset": offset,
            "next_offset": offset + len(ids) if more else None}


def _rows(s: Session, user: User, ids: list[int]) -> list[dict[str, Any]]:
    """The listing rows of exactly these (visible) thread ids."""
    threads = list(s.scalars(select(Thread).where(Thread.id.in_(ids))))
    links = links_of(s, ids)
    suggestions = suggestions_of(s, ids, user)
    counts = {int(tid): int(n) for tid, n in s.execute(
        select(Message.thread_id, func.count()).where(Message.thread_id.in_(ids))
        .group_by(Message.thread_id))}
    owners = {int(uid): str(email) for uid, email in s.execute(
        select(User.id, User.email).where(User.id.in_({t.owner_id for t in threads})))}
    return [{
        "thread_id": t.id, "subject": t.subject, "visibility": t.visibility,
        "owner": owners.get(t.owner_id), "archived": t.archived,
        "messages": counts.get(t.id, 0), "last_message_at": t.last_message_at.isoformat(),
        "links": links.get(t.id, []), "suggestions": suggestions.get(t.id, []),
        "link_state": t.link_state, "category": t.category, "also_filed_by": [],
    } for t in threads]


def get_visible_thread(session: Session, user: User, thread_id: int) -> Thread:
    t = session.get(Thread, thread_id)
    if t is None or not visibility.thread_visible(session, user, t):
        raise NotFound(f"no thread {thread_id}")  # never reveal that a private thread exists
    return t


def show_thread(session: Session, thread: Thread, viewer: User | None = None) -> dict[str, Any]:
    msgs = session.scalars(
        select(Message).where(Message.thread_id == thread.id).order_by(Message.date, Message.id)
    ).all()
    out_msgs = []
    for m in msgs:
        parts = session.scalars(select(Participant).where(Participant.message_id == m.id)
                                .order_by(Participant.id)).all()
        sources = session.scalars(select(MessageSource.source)
                                  .where(MessageSource.message_id == m.id)
                                  .order_by(MessageSource.id)).all()
        atts = session.scalars(select(Attachment).where(Attachment.message_id == m.id)
                               .order_by(Attachment.id)).all()
        auth = m.auth or {}
        out_msgs.append({
            "id": m.id,
            "message_id": m.message_id,
            "direction": m.direction,
            "from": m.from_addr,
            "from_name": m.from_name,
            "to": [p.email for p in parts if p.role == "to"],
            "cc": [p.email for p in parts if p.role == "cc"],
            "subject": m.subject,
            "date": m.date.isoformat() if m.date else None,
            "sources": list(sources),
            "text": m.text_body,
            "has_html": bool(m.html_body),
            "forwarded_by": m.forwarded_by,
            "unverified_sender": m.unverified_sender,
            "category": m.category,
            "category_reason": m.category_reason,
            "attachments": [{"id": a.id, "filename": a.filename, "content_type": a.content_type,
                             "size": a.size, "sha256": a.sha256} for a in atts],
            "auth": {"dkim": auth.get("dkim", "none"), "spf": auth.get("spf", "none"),
                     "dmarc": auth.get("dmarc", "none"), "arc": auth.get("arc", "none"),
                     "verdict": auth.get("verdict", "none"),
                     "signing_domains": auth.get("dkim_domains", []),
                     "authentication_results": auth.get("results_header", ""),
                     "forwarding": _forwarding(auth.get("forwarding"))},
        })
    owner = session.get(User, thread.owner_id)
    return {
        "thread_id": thread.id,
        "subject": thread.subject,
        "visibility": thread.visibility,
        "owner": owner.email if owner else None,
        "archived": thread.archived,
        "links": links_of(session, [thread.id]).get(thread.id, []),
        "suggestions": suggestions_of(session, [thread.id], viewer).get(thread.id, []),
        "link_state": thread.link_state,
        "category": thread.category,
        "manual_items": thread.manual_items,
        "meeting": _meeting(session, thread.id),
        "messages": out_msgs,
    }


def _meeting(session: Session, thread_id: int) -> dict[str, Any] | None:
    """The thread's meeting (SPEC §5.13): the one last changed, if it has several."""
    m = session.scalar(select(Meeting).where(Meeting.thread_id == thread_id)
                       .order_by(Meeting.updated_at.desc(), Meeting.id.desc()).limit(1))
    return m.as_json() if m is not None else None


def _forwarding(fwd: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recovered original's ``auth.forwarding`` (SPEC §4.3): the verdict of the copy that
    forwarded it, and who forwarded it — in the shape of ``auth`` itself."""
    if not fwd:
        return None
    return {"by": fwd.get("by"), "dkim": fwd.get("dkim", "none"), "spf": fwd.get("spf", "none"),
            "dmarc": fwd.get("dmarc", "none"), "arc": fwd.get("arc", "none"),
            "verdict": fwd.get("verdict", "none"),
            "signing_domains": fwd.get("dkim_domains", []),
            "authentication_results": fwd.get("results_header", "")}


def _inline_ok(content_type: str, size: int) -> bool:
    ctype = content_type.lower()
    return ctype.startswith("image/") and "svg" not in ctype and 0 < size <= MAX_INLINE


def _inline_parts(s: Session, message_id: int) -> list[tuple[str, int, int]]:
    """``(content-id, attachment id, size)`` of a message's inline image parts."""
    rows = s.execute(select(Attachment.content_id, Attachment.id, Attachment.content_type,
                            Attachment.size)
                     .where(Attachment.message_id == message_id,
                            Attachment.content_id.is_not(None))
                     .order_by(Attachment.id)).all()
    return [(cid.strip("<>").lower(), att_id, size) for cid, att_id, ctype, size in rows
            if cid and _inline_ok(ctype, size)]


def inline_part(s: Session, user: User, attachment_id: int) -> Attachment:
    """An inline image part ``user`` may see, or ``NotFound``."""
    att = attachment_for_user(s, user, attachment_id)
    if not att.content_id or not _inline_ok(att.content_type, att.size):
        raise NotFound(f"no inline image {attachment_id}")
    return att


def thread_detail(s: Session, inline_url: Callable[[int], str] | None, user: User,
                  thread_id: int, *, allow_remote: bool = False,
                  hits: bool = False) -> dict[str, Any]:
    """One visible thread; with ``inline_url``, ``cid:`` images point at their parts; with
    ``hits``, each tracked message's recent hits with their reasons (``tracking_hits``)."""
    thread = get_visible_thread(s, user, thread_id)
    shown = show_thread(s, thread, user)
    _with_names(s, user, [shown])
    html_of = {mid: (html, size) for mid, html, size in s.execute(
        select(Message.id, Message.html_body, Message.raw_size)
        .where(Message.thread_id == thread.id)).tuples()}
    allowance = INLINE_PAGE_BYTES
    for m in shown["messages"]:
        raw_html, size = html_of.get(m["id"], ("", 0))
        raw_html = raw_html or ""
        m["raw_size"] = size or len(raw_html) + len(m["text"] or "")  # a row without its size
        m["remote_images"] = blocked_remote(raw_html)
        m["inline_hidden"] = 0
        if raw_html:
            images: dict[str, str] = {}
            if inline_url is not None:
                for cid, att_id, size in _inline_parts(s, m["id"]):
                    if cid in images or size > allowance:
                        continue
                    allowance -= size
                    images[cid] = inline_url(att_id)
            stats: dict[str, int] = {}
            m["html"] = clean_email_html(raw_html, inline_images=images,
                                         allow_remote=allow_remote, stats=stats)
            m["inline_hidden"] = stats.get("hidden", 0)
        else:
            m["html"] = None
    sends = {mid: (status, reason, refused) for mid, status, reason, refused in s.execute(
        select(Send.message_id, Send.status, Send.last_error, Send.refused)
        .where(Send.message_id.in_([m["id"] for m in shown["messages"]])))}
    tracked = tracking_summary.for_messages(s, sends)
    for m in shown["messages"]:
        found = sends.get(m["id"])
        m["send"] = None if found is None else {
            "status": "queued" if found[0] == "sending" else found[0],
            "reason": found[1] if found[0] in ("queued", "sending", "failed") else "",
            "refused": list(found[2] or [])}
        m["tracking"] = tracked.get(m["id"])
        if hits and m["tracking"] is not None:
            m["tracking_hits"] = tracking_summary.recent_hits(s, m["id"])
    shown["is_owner"] = thread.owner_id == user.id
    return shown


def raw_message(s: Session, user: User, message_id: int) -> tuple[str, bytes]:
    row = s.execute(select(Message.thread_id, Message.subject).where(Message.id == message_id)).first()
    if row is None:
        raise NotFound(f"no message {message_id}")
    try:
        get_visible_thread(s, user, row.thread_id)
    except NotFound:
        raise NotFound(f"no message {message_id}") from None
    raw = s.get(MessageRaw, message_id)
    if raw is None:
        raise NotFound(f"message {message_id} has no stored original")
    return f"message-{message_id}.eml", bytes(raw.raw)


def summary(s: Session, thread_id: int, user: User) -> dict[str, Any]:
    """The listing row of one thread (the caller checked that ``user`` may see it)."""
    rows = _rows(s, user, [thread_id])
    if not rows:
        raise NotFound(f"no thread {thread_id}")
    return _with_names(s, user, rows)[0]


def person_by_email(s: Session, user: User, email: str) -> int:
    addr = parse_email_arg(email, "person address")
    pid = s.scalar(select(PersonEmail.person_id).where(
        PersonEmail.company_id == user.company_id, PersonEmail.email == addr))
    if pid is None or not visibility.entity_visible(s, user, "person", pid):
        raise NotFound(f"no person with the address {addr}")
    return int(pid)


def link_choices(s: Session, user: User, *, limit: int = 300) -> list[dict[str, Any]]:
    """Open deals, leads and projects the user may see (for the link form)."""
    q = select(Item.id, Item.kind, Item.title).where(
        Item.status == "open", visibility.entity_visible_clause(Item, user))
    rows = s.execute(q.order_by(Item.kind, Item.title, Item.id).limit(limit)).all()
    return [{"kind": k, "id": i, "title": t} for i, k, t in rows]
