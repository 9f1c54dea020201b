"""Syncing one account's folders into the ingest entry point (SPEC §7).

Takes a logged-in :class:`~bccd.imap.client.AsyncImap`, the database, an
:class:`IngestSink` (the ingest pipeline's ``ingest_imap``) and the account; returns a
:class:`FolderResult` per folder. Nothing here marks mail read or changes the mailbox:
folders are EXAMINEd (read-only) and bodies fetched with ``BODY.PEEK[]``.

Which folders (``bccd.imap.plan``; "all mail", the default): when the server has a SPECIAL-USE ``\\All``
folder it alone is synced (it holds every message once); otherwise INBOX, ``\\Sent`` and
every other selectable folder except ``\\Trash``, ``\\Junk``, ``\\Drafts`` and
``\\Flagged`` (unfinished or discarded mail, and a virtual copy). Special folders are
found by their flag, never by a localized name. Chosen folders (``--folders``) are synced
as named; a name may also be a flag such as ``\\Sent``. Gmail (``X-GM-EXT-1``): ``\\All``
is synced once and chosen folders act as labels (``INBOX`` ↔ ``\\Inbox``, a flagged
folder such as ``[Gmail]/Sent Mail`` ↔ ``\\Sent``); X-GM-THRID and X-GM-LABELS are passed
on in :class:`~bccd.ingest.types.ImapOrigin`.

State per (account, folder) is ``ImapFolderState(uidvalidity, last_uid)``:

- first sync (or a new UIDVALIDITY): ``SEARCH SINCE`` today − ``imap.initial_days``
  (0 = the whole folder); when that window is done the mark jumps to the UIDNEXT seen at
  selection, so older mail is never fetched later. A changed UIDVALIDITY drops the
  folder's stale ``ImapMessageRef`` rows (their UIDs mean nothing any more) and resyncs;
  dedup in ingest makes the refetch safe. After a crash in the middle of a first sync the
  resumed run continues from the mark without the window, so it may fetch some older
  mail above it — never skip, never duplicate.
- later syncs: ``UID last+1:*``.
- messages are fetched in batches of ``imap.batch_size`` (sizes and Gmail attributes
  first, then bodies in groups bounded by count and bytes); a message larger than
  ``smtp.max_message_size`` is skipped with a log line, like a 552 on SMTP.
- the mark (``last_uid``) only moves after ingest returned for every UID below it, and is
  committed after each body group: a crash re-fetches at most one group, never skips.
  The messages of a body group are ingested concurrently (their commits then share the
  database's group commits), their outcomes taken in UID order; meanwhile the next
  group's bodies are already being fetched (one group ahead, so at most two groups'
  bytes are held).

Direction (SPEC §7): ``ImapOrigin.sent`` (the ``\\Sent`` folder, synced first, or Gmail's
``\\Sent`` label) and the account's ``authserv_ids`` let ingest decide whose mail it is.

Scope (SPEC §7): with ``scope = known`` ingest skips mail without a counterpart that is
a person of the company (``SKIPPED``, counted in ``out_of_scope``) and records it; at each
pass the skipped UIDs ``bccd.imap.scope.due`` names (a person was added since, or the scope
is now ``all``) are fetched again before the folder's new mail, and forgotten once stored.

Failure: an ingest outcome ``TEMPFAIL`` (returned or raised) stops the folder with
:class:`IngestDeferred` after committing the mark up to the last ingested UID, so the
message is fetched again on the next run; a permanent refusal (``REFUSED``) is logged and
skipped. IMAP errors surface as :class:`~bccd.imap.client.ImapFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bccd.config import Settings
from bccd.imap import scope
from bccd.imap.client import AsyncImap, ImapFailure, find_special
from bccd.imap.plan import LabelFilter, norm_label, plan_folders
from bccd.ingest.outcome import Disposition, IngestError, Outcome
from bccd.ingest.types import FilingOrder, ImapOrigin, Turn
from bccd.log import get_logger
from bccd.mailboxes import progress as status
from bccd.mailboxes.accounts import AccountConfig
from bccd.store.db import Database
from bccd.store.models import ImapFolderState, ImapMessageRef

log = get_logger("bccd.imap.sync")

GROUP_BYTES = 32 * 1024 * 1024  # body bytes fetched per round trip (at least one message)

Progress = Callable[[str, int, int], None]  # (folder, done, total)


class IngestSink(Protocol):
    """The ingest entry point (``bccd.ingest.pipeline.Pipeline.ingest_imap``)."""

    async def ingest_imap(self, raw: bytes, *, user_id: int, origin: ImapOrigin,
                          turn: Turn | None = None) -> Outcome: ...


class SyncStopped(Exception):
    """The poller asked this account's sync to stop (the mailbox is being removed)."""


class IngestDeferred(ImapFailure):
    """Ingest failed temporarily; the folder stops and the message is fetched again."""


# ---------------------------------------------------------------- state (blocking)


def _prepare_state(session: Session, account_id: int, folder: str, uidvalidity: int) -> tuple[int, bool]:
    """→ (last_uid, fresh). A new UIDVALIDITY resets the mark and drops stale refs."""
    row = session.scalar(
        select(ImapFolderState).where(
            ImapFolderState.account_id == account_id, ImapFolderState.folder == folder
        )
    )
    if row is None:
        session.add(
            ImapFolderState(account_id=account_id, folder=folder, uidvalidity=uidvalidity, last_uid=0)
        )
        return 0, True
    if row.uidvalidity != uidvalidity:
        session.execute(
            delete(ImapMessageRef).where(
                ImapMessageRef.account_id == account_id,
                ImapMessageRef.folder == folder,
                ImapMessageRef.uidvalidity != uidvalidity,
            )
        )
        log.warning(
            "imap_uidvalidity_changed",
            account=account_id,
            folder=folder,
            old=row.uidvalidity,
            new=uidvalidity,
        )
        row.uidvalidity = uidvalidity
        row.last_uid = 0
        return 0, True
    return row.last_uid, row.last_uid == 0


def _advance(session: Session, account_id: int, folder: str, uidvalidity: int, uid: int,
             done: int = 0, stored: int = 0) -> None:
    """Move the mark forward (never back, never across a UIDVALIDITY change); count the
    group in the account's status (``AccountGone`` if the account was removed)."""
    status.record(session, account_id, done=done, stored=stored)
    row = session.scalar(
        select(ImapFolderState).where(
            ImapFolderState.account_id == account_id, ImapFolderState.folder == folder
        )
    )
    if row is not None and row.uidvalidity == uidvalidity and uid > row.last_uid:
        row.last_uid = uid


# ---------------------------------------------------------------- sync


@dataclass(slots=True)
class FolderResult:
    folder: str
    uidvalidity: int = 0
    fresh: bool = False
    candidates: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    skipped: int = 0
    out_of_scope: int = 0      # scope known: no counterpart is a person (SPEC §7)
    reexamined: int = 0        # skipped earlier, fetched again at this pass
    last_uid: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(value: Any) -> tuple[str, ...]:
    from imapclient.imap_utf7 import decode as utf7_decode

    out: list[str] = []
    for item in value or ():
        out.append(utf7_decode(item) if isinstance(item, bytes) else str(item))
    return tuple(out)


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(slots=True)
class _Meta:
    uid: int
    size: int
    thrid: str | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)
    skip: str = ""  # why it is not ingested ("" = ingest it)


async def sync_folder(
    imap: AsyncImap,
    db: Database,
    sink: IngestSink,
    account: AccountConfig,
    folder: str,
    settings: Settings,
    *,
    labels: LabelFilter | None = None,
    gmail: bool = False,
    progress: Progress | None = None,
    today: dt.date | None = None,
    cancel: threading.Event | None = None,
    sent: bool = False,  # the account's \Sent folder (SPEC §7)
) -> FolderResult:
    """Sync one folder; ``cancel`` set → :class:`SyncStopped` before the next group."""
    cfg = settings.imap
    sel = await imap.select(folder, readonly=True)
    last_uid, fresh = await db.run(_tx, _prepare_state, account.id, folder, sel.uidvalidity, db=db)
    res = FolderResult(folder, sel.uidvalidity, fresh, last_uid=last_uid)
    baseline = 0
    if sel.exists == 0:
        uids: list[int] = []
        baseline = (sel.uidnext - 1) if (fresh and sel.uidnext) else 0
    elif fresh:
        if cfg.initial_days > 0:
            since = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=cfg.initial_days)
            uids = await imap.search(["SINCE", since])
        else:
            uids = await imap.search(["ALL"])
        baseline = sel.uidnext - 1 if sel.uidnext else await imap.last_uid()
    elif sel.uidnext is not None and sel.uidnext <= last_uid + 1:
        uids = []
    else:
        uids = [u for u in await imap.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
    window = (dt.datetime.combine(today or dt.datetime.now(dt.UTC).date(), dt.time(), dt.UTC)
              - dt.timedelta(days=cfg.initial_days)) if cfg.initial_days > 0 else None
    again = await db.run(_tx, scope.due, account.id, account.user_id, folder, sel.uidvalidity,
                         account.scope, window, db=db)
    new = set(uids)
    again = [u for u in again if u <= last_uid and u not in new]
    uids = again + uids   # examined again first: they are older
    res.reexamined, settled = len(again), list[int]()
    res.candidates = len(uids)
    await db.run(_tx, status.add_total, account.id, len(uids), db=db)
    if progress is not None:
        progress(folder, 0, len(uids))
    if uids:
        log.info("imap_folder_sync", account=account.id, folder=folder, candidates=len(uids), fresh=fresh)

    counted = [0, 0]  # done, stored: what the account's status already has

    async def advance(uid: int) -> None:
        delta = (done - counted[0], res.stored - counted[1])
        if uid > res.last_uid or any(delta):
            await db.run(_tx, _advance, account.id, folder, sel.uidvalidity, max(uid, res.last_uid),
                         *delta, db=db)
            res.last_uid = max(uid, res.last_uid)
            counted[:] = [done, res.stored]

    done = 0
    max_size = settings.smtp.max_message_size
    meta_items = ["RFC822.SIZE"] + (["X-GM-THRID", "X-GM-LABELS"] if gmail else [])

    async def planned() -> AsyncGenerator[list[_Meta], None]:
        for chunk in _chunks(uids, cfg.batch_size):
            fetched = await imap.fetch(chunk, meta_items)
            metas: list[_Meta] = []
            for uid in chunk:
                item = fetched.get(uid)
                if item is None:
                    metas.append(_Meta(uid, 0, skip="expunged"))
                    continue
                m = _Meta(uid, int(item.get(b"RFC822.SIZE", 0) or 0))
                if gmail:
                    thrid = item.get(b"X-GM-THRID")
                    m.thrid = str(thrid) if thrid is not None else None
                    m.labels = _labels(item.get(b"X-GM-LABELS"))
                    if labels is not None and not labels.matches(m.labels):
                        m.skip = "label"
                if not m.skip and m.size > max_size:
                    m.skip = "too_big"
                    log.warning("imap_message_too_big", account=account.id, folder=folder,
                                uid=uid, size=m.size)
                metas.append(m)
            for group in _groups(metas, cfg.batch_size):
                yield group

    groups = planned()

    async def fetch_next() -> tuple[list[_Meta], dict[int, dict[bytes, Any]]] | None:
        group = await anext(groups, None)
        if group is None:
            return None
        want = [m.uid for m in group if not m.skip]
        return group, (await imap.fetch(want, ["BODY.PEEK[]"]) if want else {})

    # the next group's bodies are fetched (IMAP thread, server) while this group is ingested
    order = FilingOrder()
    ahead: asyncio.Future[Any] = asyncio.ensure_future(fetch_next())
    try:
        while (item := await ahead) is not None:
            ahead = asyncio.ensure_future(fetch_next())
            group, bodies = item
            if cancel is not None and cancel.is_set():
                raise SyncStopped(f"sync of account {account.id} stopped")
            # the group's messages are ingested concurrently (their commits share the
            # database's group commits) and filed in UID order (``order``); outcomes are
            # then taken in UID order, so the mark still only passes a UID whose ingest
            # returned
            pending: dict[int, asyncio.Future[Outcome]] = {}
            for m in group:
                raw = bodies.get(m.uid, {}).get(b"BODY[]") if not m.skip else None
                if raw is not None:
                    origin = ImapOrigin(
                        account_id=account.id,
                        folder=folder,
                        uidvalidity=sel.uidvalidity,
                        uid=m.uid,
                        gm_thrid=m.thrid,
                        gm_labels=m.labels,
                        sent=sent or "\\sent" in map(norm_label, m.labels),
                        authserv_ids=account.authserv_ids,
                        scope=account.scope,
                    )
                    pending[m.uid] = asyncio.ensure_future(
                        _ingest(sink, raw, account, origin, order.take()))
            if pending:
                await asyncio.wait(pending.values())
            high = res.last_uid
            for m in group:
                task = pending.get(m.uid)
                if task is None:
                    res.skipped += 1
                    if not m.skip:
                        log.warning("imap_message_vanished", account=account.id, folder=folder,
                                    uid=m.uid)
                    kept = False
                else:
                    try:
                        outcome = task.result()
                    except IngestDeferred:
                        await advance(high)
                        raise
                    _count(res, outcome, account, folder, m.uid)
                    kept = outcome.disposition is Disposition.SKIPPED
                if again and m.uid <= last_uid and not kept:
                    settled.append(m.uid)  # stored at last (or gone): no longer skipped
                high = m.uid
                done += 1
                if progress is not None:
                    progress(folder, done, len(uids))
            await advance(high)
    finally:
        if not ahead.done():
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
        await groups.aclose()
    if settled:
        await db.run(_tx, scope.forget, account.id, folder, sel.uidvalidity, settled, db=db)
    if baseline > res.last_uid:
        await advance(baseline)
    return res


async def _ingest(sink: IngestSink, raw: bytes, account: AccountConfig, origin: ImapOrigin,
                  turn: Turn) -> Outcome:
    try:
        outcome = await sink.ingest_imap(bytes(raw), user_id=account.user_id, origin=origin,
                                         turn=turn)
    except IngestError as exc:
        if exc.disposition is Disposition.REFUSED:
            return Outcome.from_error(exc)
        raise IngestDeferred(f"ingest failed temporarily: {exc.reason}") from None
    except Exception as exc:
        log.exception("imap_ingest_failed", account=account.id, folder=origin.folder, uid=origin.uid)
        raise IngestDeferred(f"ingest failed temporarily: {type(exc).__name__}") from None
    finally:
        turn.done()  # whatever the sink did, the next message's turn comes
    if outcome.disposition is Disposition.TEMPFAIL:
        raise IngestDeferred(f"ingest failed temporarily: {outcome.reason or 'try again'}")
    return outcome


def _count(res: FolderResult, outcome: Outcome, account: AccountConfig, folder: str, uid: int) -> None:
    d = outcome.disposition
    if d is Disposition.STORED:
        res.stored += 1
    elif d is Disposition.DUPLICATE:
        res.duplicates += 1
    elif d is Disposition.DROPPED:
        res.dropped += 1
    elif d is Disposition.SKIPPED:
        res.out_of_scope += 1
    else:
        res.skipped += 1
        log.warning(
            "imap_message_refused",
            account=account.id,
            folder=folder,
            uid=uid,
            disposition=str(d),
            reason=outcome.reason,
        )


def _groups(metas: list[_Meta], max_count: int) -> list[list[_Meta]]:
    """Split a batch into body fetches bounded by count and bytes (≥ 1 message each)."""
    groups: list[list[_Meta]] = []
    cur: list[_Meta] = []
    size = 0
    for m in metas:
        cost = 0 if m.skip else m.size
        if cur and (len(cur) >= max_count or size + cost > GROUP_BYTES):
            groups.append(cur)
            cur, size = [], 0
        cur.append(m)
        size += cost
    if cur:
        groups.append(cur)
    return groups


def _tx(fn: Callable[..., Any], *args: Any, db: Database) -> Any:
    with db.transaction() as session:
        return fn(session, *args)


@dataclass(slots=True)
class AccountResult:
    account_id: int
    folders: list[FolderResult] = field(default_factory=list)
    error: str | None = None

    @property
    def stored(self) -> int:
        return sum(f.stored for f in self.folders)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "ok": self.error is None,
            "error": self.error,
            "stored": self.stored,
            "duplicates": sum(f.duplicates for f in self.folders),
            "folders": [f.as_dict() for f in self.folders],
        }


async def sync_account(
    imap: AsyncImap,
    db: Database,
    sink: IngestSink,
    account: AccountConfig,
    settings: Settings,
    *,
    progress: Progress | None = None,
    result: AccountResult | None = None,
    cancel: threading.Event | None = None,
) -> AccountResult:
    """Sync every planned folder once; results accumulate in ``result`` as they finish."""
    result = result if result is not None else AccountResult(account.id)
    await db.run(_tx, status.begin_pass, account.id, db=db)
    infos = await imap.list_folders()
    plan = plan_folders(infos, account.folders, gmail=imap.is_gmail)
    sent = find_special(infos, "\\Sent")
    # Sent first: mail the user sent to themselves is filed from it, before the inbox copy
    for folder in sorted(plan.folders, key=lambda f: f != sent):
        res = await sync_folder(imap, db, sink, account, folder, settings, labels=plan.labels,
                                gmail=plan.gmail, progress=progress, cancel=cancel,
                                sent=folder == sent)
        result.folders.append(res)
    return result
