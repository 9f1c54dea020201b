"""Offboarding: ``user disable``, ``user enable``, ``user delete EMAIL``, ``company delete SLUG``.

``disable_user(session, user)`` — in the caller's transaction: the user's Smart Bcc
address (and pinned deal/lead/project addresses, when they are the sender) answer
``550 5.1.1`` (``bccd.ingest.recipients``), their API token stops working
(``accounts.user_by_api_token``), their IMAP accounts get ``state = 'disabled'``.
``enable_user(session, user)`` undoes it, with a new API token (see its docstring).

``delete_user(db, blobs, email, grace=…)`` / ``delete_company(db, blobs, slug, grace=…)``
→ :class:`Removal`. Each runs two transactions:

1. disable (the user, or every user of the company) and commit — from here on nothing
   new arrives for them; a crash here leaves disabled users, nothing half deleted;
2. count, then delete in one transaction: the root row (the user or the company) with
   every row that cascades from it (threads, messages, raw bytes, participants,
   attachments, links, quarantine, rejections, alternates, blocked list, counters, IMAP
   accounts and their state …), plus what no foreign key reaches: refused-copy records
   without a user that came from their addresses to the company's addresses, and outbox
   jobs naming them. All or nothing; running the command again after a crash finishes it.

After the commit, blobs only they referenced are deleted through ``dbgc.collect_all``, from
either store (file-store ones written within ``grace`` are left to the periodic
collector). Remote mailboxes are never touched: no IMAP write-back is queued. Persons,
organizations and deals the user owned are company data: they stay, without an owner.
``dry_run=True`` reports the same counts and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, false, func, or_, select, update
from sqlalchemy.orm import Session

from bccd import accounts
from bccd.addresses import hash_token
from bccd.errors import Conflict
from bccd.lifecycle import blobgc, cascade, dbgc
from bccd.log import get_logger
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.models import (
    Alternate,
    Company,
    ImapAccount,
    Message,
    OutboxJob,
    Rejection,
    User,
)

log = get_logger("bccd.lifecycle")


@dataclass(slots=True)
class Removal:
    """What an offboarding or erasure removed (or, for a dry run, would remove)."""

    subject: str                                   # "user alice@acme.test", "company acme" …
    removed: dict[str, int] = field(default_factory=dict)   # table → rows
    blobs: blobgc.GcReport | None = None
    blob_candidates: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        blobs = self.blobs
        return {
            "subject": self.subject,
            "dry_run": self.dry_run,
            "removed": dict(sorted(self.removed.items())),
            "blobs": {
                "candidates": self.blob_candidates,
                "deleted": blobs.deleted if blobs else 0,
                "freed_bytes": blobs.freed_bytes if blobs else 0,
                "still_referenced": blobs.referenced if blobs else 0,
                "deferred": blobs.deferred if blobs else 0,
            },
        }


# ------------------------------------------------------------------ disable
def disable_user(session: Session, user: User) -> dict[str, Any]:
    user.disabled = True
    paused = session.execute(
        update(ImapAccount).where(ImapAccount.user_id == user.id, ImapAccount.state != "disabled")
        .values(state="disabled", state_reason="user disabled")
    )
    session.flush()
    n = int(getattr(paused, "rowcount", 0) or 0)
    log.info("user_disabled", user=user.id, imap_accounts=n)
    return {"email": user.email, "disabled": True, "imap_accounts_disabled": n}


def enable_user(session: Session, user: User) -> dict[str, Any]:
    """Undo ``disable_user``: the user's addresses accept mail again and their disabled
    IMAP accounts sync again (only ``disable_user`` ever sets ``state = 'disabled'``).
    The API token the user had stays dead: a new one is issued and returned, once, so a
    token that left with the person (or leaked meanwhile) does not come back to life;
    Mail-page sessions bound to the old token end with it. Enabling a user who is not
    disabled is refused (``Conflict``) rather than rotating a working token; the change
    is one conditional UPDATE, so of two enables at once exactly one issues a token."""
    token = accounts.new_api_token()
    enabled = session.execute(
        update(User).where(User.id == user.id, User.disabled.is_(True))
        .values(disabled=False, api_token_hash=hash_token(token)))
    if int(getattr(enabled, "rowcount", 0) or 0) != 1:
        raise Conflict(f"user {user.email} is not disabled")
    resumed = session.execute(
        update(ImapAccount).where(ImapAccount.user_id == user.id, ImapAccount.state == "disabled")
        .values(state="active", state_reason="", failures=0, next_attempt_at=None)
    )
    session.flush()
    n = int(getattr(resumed, "rowcount", 0) or 0)
    log.info("user_enabled", user=user.id, imap_accounts=n)
    return {"email": user.email, "disabled": False, "api_token": token, "imap_accounts_enabled": n}


def user_addresses(session: Session, user_ids: list[int]) -> set[str]:
    """Login and alternate addresses (any status) of these users, lowercased."""
    if not user_ids:
        return set()
    addrs = set(session.scalars(select(User.email).where(User.id.in_(user_ids))))
    addrs |= set(session.scalars(select(Alternate.email).where(Alternate.user_id.in_(user_ids))))
    return {a.lower() for a in addrs}


def _orphan_rejections(session: Session, slug: str, addresses: set[str] | None) -> list[int]:
    """Refused-copy records with no user (a pinned address, a refused sender) to the
    company's addresses — all of them, or those from ``addresses``."""
    cond = and_(Rejection.user_id.is_(None), Rejection.recipient.startswith(f"{slug}+", autoescape=True))
    if addresses is not None:
        if not addresses:
            return []
        cond = and_(cond, or_(*[
            or_(func.lower(Rejection.mail_from) == a,
                func.lower(Rejection.from_header).contains(a, autoescape=True))
            for a in sorted(addresses)]))
    return list(session.scalars(select(Rejection.id).where(cond)))


# ------------------------------------------------------------------ delete
def delete_user(db: Database, blobs: Blobs, email: str, *, grace: float,
                dry_run: bool = False) -> Removal:
    if not dry_run:
        with db.transaction() as s:
            disable_user(s, accounts.get_user(s, email))
    with cascade.transaction(db, dry_run=dry_run) as s:
        user = accounts.get_user(s, email)
        removal = Removal(f"user {user.email}", dry_run=dry_run)
        digests = cascade.attachment_digests(s, Message.user_id == user.id)
        _remove_users(s, [user.id], user.company.slug, removal, orphans_from_users_only=True)
        removal.removed = cascade.add_counts(
            cascade.cascade_counts(s, cascade.table("users"), User.__table__.c.id == user.id),
            removal.removed)
        s.execute(delete(User).where(User.id == user.id))
    collect_blobs(db, blobs, digests, grace, removal)
    log.info("user_deleted", **removal.as_dict())
    return removal


def delete_company(db: Database, blobs: Blobs, slug: str, *, grace: float,
                   dry_run: bool = False) -> Removal:
    if not dry_run:
        with db.transaction() as s:
            company = accounts.get_company(s, slug)
            for u in s.scalars(select(User).where(User.company_id == company.id)):
                disable_user(s, u)
    with cascade.transaction(db, dry_run=dry_run) as s:
        company = accounts.get_company(s, slug)
        removal = Removal(f"company {company.slug}", dry_run=dry_run)
        digests = cascade.attachment_digests(s, Message.company_id == company.id)
        user_ids = list(s.scalars(select(User.id).where(User.company_id == company.id)))
        _remove_users(s, user_ids, company.slug, removal, orphans_from_users_only=False)
        removal.removed = cascade.add_counts(
            cascade.cascade_counts(s, cascade.table("companies"),
                                   Company.__table__.c.id == company.id),
            removal.removed)
        s.execute(delete(Company).where(Company.id == company.id))
    collect_blobs(db, blobs, digests, grace, removal)
    log.info("company_deleted", **removal.as_dict())
    return removal


def _remove_users(s: Session, user_ids: list[int], slug: str, removal: Removal, *,
                  orphans_from_users_only: bool) -> None:
    """Delete what no foreign key ties to these users: user-less rejections and outbox jobs."""
    addrs = user_addresses(s, user_ids)
    account_ids = list(s.scalars(select(ImapAccount.id).where(
        ImapAccount.user_id.in_(user_ids) if user_ids else false())))
    rej = _orphan_rejections(s, slug, addrs if orphans_from_users_only else None)
    jobs = cascade.outbox_jobs_mentioning(s, user_ids=set(user_ids), account_ids=set(account_ids),
                                          addresses=addrs)
    cascade.add_counts(removal.removed, {
        "rejections": cascade.delete_ids(s, Rejection, rej),
        "outbox": cascade.delete_ids(s, OutboxJob, jobs),
    })


def collect_blobs(db: Database, blobs: Blobs, digests: set[str], grace: float,
             removal: Removal) -> None:
    removal.blob_candidates = len(digests)
    if removal.dry_run or not digests:
        return
    removal.blobs = dbgc.collect_all(db, blobs, grace=grace, candidates=digests)
