"""Whose copy each recipient of a message is (SPEC §2, §4.1, §4.4, §5.6): the small
named checks of ``COPY_CHECKS``, in order, each deciding one recipient — a copy to file
(or to hold in quarantine), or the refusal with its human reason — or passing it to the
next. ``copies(session, settings, targets, sender)`` runs them for every recipient of
one message; the pipeline calls it once per message (a read shared with concurrent
messages of the same sender).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bccd import replies as R
from bccd.auth.sender import Mailbox
from bccd.config import Settings
from bccd.ingest import filing
from bccd.ingest.outcome import Disposition, Outcome, SenderRefused, UnknownRecipient
from bccd.ingest.recipients import company_user_for_sender, disabled_user_for_sender
from bccd.ingest.types import Target
from bccd.quarantine.hold import not_confirmed_reason


@dataclass(frozen=True, slots=True)
class Copy:
    target: Target
    user_id: int
    pinned: tuple[str, int] | None
    quarantine: bool = False   # not the user's address: kept in quarantine if authentic


@dataclass(frozen=True, slots=True)
class _Ask:
    """What a copy check is given: one recipient of one message."""

    session: Session
    settings: Settings
    target: Target
    sender: Mailbox


# A copy check decides one recipient — a copy to file or hold, or the refusal — or passes
# (``None``) to the next check; the last one always decides.
_Check = Callable[[_Ask], "Copy | Outcome | None"]


def _pinned_address(ask: _Ask) -> Copy | Outcome | None:
    """A per-deal/lead/project address (SPEC §2): the sender must be an enabled user of the
    entity's company, whose copy it is."""
    t = ask.target
    if t.pinned_kind is None or t.pinned_id is None:
        return None
    uid = company_user_for_sender(ask.session, t.company_id, ask.sender.email)
    if uid is not None:
        return Copy(t, uid, (t.pinned_kind, t.pinned_id))
    if disabled_user_for_sender(ask.session, t.company_id, ask.sender.email):
        return Outcome.from_error(UnknownRecipient(f"{ask.sender.email} is a disabled user"))
    return Outcome.from_error(SenderRefused(
        f"{ask.sender.email} is not the address of a user of this company"))


def _users_own_address(ask: _Ask) -> Copy | Outcome | None:
    """The user's own Smart Bcc address, from their login or a confirmed alternate."""
    t = ask.target
    assert t.user_id is not None  # not pinned: the address names its user
    if ask.sender.email in filing.user_addresses(ask.session, t.user_id):
        return Copy(t, t.user_id, None)
    return None


def _quarantine_candidate(ask: _Ask) -> Copy | Outcome | None:
    """``auth.unverified = "quarantine"`` (SPEC §4.4): kept if authentic, decided after
    authenticity."""
    if ask.settings.auth.unverified != "quarantine":
        return None
    assert ask.target.user_id is not None
    return Copy(ask.target, ask.target.user_id, None, quarantine=True)


def _not_the_users_address(ask: _Ask) -> Copy | Outcome | None:
    return Outcome.from_error(SenderRefused(not_confirmed_reason(ask.sender.email)))


COPY_CHECKS: tuple[_Check, ...] = (
    _pinned_address, _users_own_address, _quarantine_candidate, _not_the_users_address)


def copies(
    session: Session, settings: Settings, targets: Sequence[Target], sender: Mailbox
) -> tuple[list[Copy], dict[Target, Outcome]]:
    """Which user each target's copy belongs to (``COPY_CHECKS``); refusals for the rest.

    A user named by several recipients gets one copy; a pinned address's copy wins, so
    the message gets the pinned link (SPEC §5.6), and the other recipients are answered
    as the same copy.
    """
    kept: dict[int, Copy] = {}
    outcomes: dict[Target, Outcome] = {}
    for t in targets:
        ask = _Ask(session, settings, t, sender)
        decided = next(d for check in COPY_CHECKS if (d := check(ask)) is not None)
        if isinstance(decided, Outcome):
            outcomes[t] = decided
            continue
        prev = kept.get(decided.user_id)
        if prev is not None and decided.pinned is None:
            outcomes[t] = _merged()
            continue
        if prev is not None:
            outcomes[prev.target] = _merged()
        kept[decided.user_id] = decided
    return list(kept.values()), outcomes


def _merged() -> Outcome:
    return Outcome(Disposition.DUPLICATE, R.STORED, reason="same user as another recipient")
