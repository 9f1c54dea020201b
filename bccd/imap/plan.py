"""Which folders of an account to sync (SPEC §7): the plan ``bccd.imap.sync`` follows.

``plan_folders(folders, chosen, gmail=…)`` → :class:`Plan`. With no folders chosen
("all mail"): a SPECIAL-USE ``\\All`` folder alone when the server has one (it holds every
message once); otherwise INBOX, ``\\Sent`` and every other selectable folder except
``\\Trash``, ``\\Junk``, ``\\Drafts`` and ``\\Flagged``. Special folders are found by their
flag, never by a localized name. Chosen folders are synced as named; a name may also be a
flag such as ``\\Sent``. Gmail: ``\\All`` is synced once and chosen folders act as labels
(:class:`LabelFilter`). An unknown folder raises ``ProtocolFailure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bccd.imap.client import FolderInfo, ProtocolFailure, find_special

EXCLUDED_BY_DEFAULT = frozenset({"\\trash", "\\junk", "\\drafts", "\\flagged"})
# SPECIAL-USE flag of a Gmail folder → the system label it stands for
_GMAIL_LABEL_OF_FLAG = {
    "\\sent": "\\sent",
    "\\drafts": "\\draft",
    "\\important": "\\important",
    "\\flagged": "\\starred",
    "\\junk": "\\spam",
    "\\trash": "\\trash",
}




def norm_label(label: str) -> str:
    low = label.strip().lower()
    return "\\inbox" if low in ("inbox", "\\inbox") else low


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """Gmail: keep a message when any of its labels is wanted."""

    wanted: frozenset[str]

    def matches(self, labels: Sequence[str]) -> bool:
        return any(norm_label(lb) in self.wanted for lb in labels)


@dataclass(frozen=True, slots=True)
class Plan:
    folders: tuple[str, ...]
    labels: LabelFilter | None = None
    gmail: bool = False


def _is_inbox(name: str) -> bool:
    return name.upper() == "INBOX"


def plan_folders(folders: Sequence[FolderInfo], chosen: Sequence[str], *, gmail: bool) -> Plan:
    """Decide which folders to sync (see the module docstring). Raises ProtocolFailure."""
    by_name = {f.name: f for f in folders}
    if gmail:
        all_mail = find_special(folders, "\\All")
        if all_mail is not None:
            if not chosen:
                return Plan((all_mail,), None, gmail=True)
            wanted: set[str] = set()
            for name in chosen:
                wanted.add(norm_label(name))
                info = by_name.get(name)
                for flag in info.flags if info else ():
                    if flag in _GMAIL_LABEL_OF_FLAG:
                        wanted.add(_GMAIL_LABEL_OF_FLAG[flag])
            return Plan((all_mail,), LabelFilter(frozenset(wanted)), gmail=True)
    if chosen:
        picked: list[str] = []
        for name in chosen:
            if name.startswith("\\"):
                found = find_special(folders, name)
            elif _is_inbox(name):
                found = next((f.name for f in folders if _is_inbox(f.name)), "INBOX")
            else:
                info = by_name.get(name)
                found = info.name if info is not None and info.selectable else None
            if found is None:
                raise ProtocolFailure(f"folder {name!r} not found on the server")
            if found not in picked:
                picked.append(found)
        return Plan(tuple(picked))
    all_mail = find_special(folders, "\\All")
    if all_mail is not None:
        return Plan((all_mail,))
    inbox = next((f.name for f in folders if _is_inbox(f.name)), "INBOX")
    sent = find_special(folders, "\\Sent")
    rest = sorted(
        f.name
        for f in folders
        if f.selectable and not _is_inbox(f.name) and f.name != sent and not (f.flags & EXCLUDED_BY_DEFAULT)
    )
    return Plan(tuple([inbox] + ([sent] if sent else []) + rest))
