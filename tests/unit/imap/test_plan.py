"""Folder choice by SPECIAL-USE flag (never by name) and Gmail label filtering."""

from __future__ import annotations

import pytest

from bccd.imap.client import FolderInfo, ProtocolFailure, find_special
from bccd.imap.plan import LabelFilter, Plan, plan_folders
from bccd.imap.sync import _groups, _Meta

pytestmark = pytest.mark.spec("7")


def F(name: str, *flags: str) -> FolderInfo:
    return FolderInfo(name, frozenset(f.lower() for f in flags))


LOCALIZED = [
    F("INBOX"),
    F("Gesendete Objekte", "\\Sent"),
    F("Papierkorb", "\\Trash"),
    F("Spam", "\\Junk"),
    F("Entwürfe", "\\Drafts"),
    F("Archiv", "\\Archive"),
    F("Kunden"),
    F("Kunden/Acme"),
    F("[Virtual]", "\\Noselect"),
    F("Markiert", "\\Flagged"),
    F("Trash"),  # a folder merely *named* Trash is ordinary mail
]


def test_default_is_inbox_sent_and_the_rest_except_trash_junk_drafts() -> None:
    plan = plan_folders(LOCALIZED, [], gmail=False)
    assert plan == Plan(("INBOX", "Gesendete Objekte", "Archiv", "Kunden", "Kunden/Acme", "Trash"))


def test_all_folder_alone_when_present() -> None:
    plan = plan_folders([*LOCALIZED, F("Alle Nachrichten", "\\All")], [], gmail=False)
    assert plan.folders == ("Alle Nachrichten",)


def test_chosen_folders_by_name_inbox_case_and_flag() -> None:
    plan = plan_folders(LOCALIZED, ["inbox", "\\Sent", "Kunden/Acme", "\\sent"], gmail=False)
    assert plan.folders == ("INBOX", "Gesendete Objekte", "Kunden/Acme")
    with pytest.raises(ProtocolFailure, match="'Nope' not found"):
        plan_folders(LOCALIZED, ["Nope"], gmail=False)
    with pytest.raises(ProtocolFailure):
        plan_folders(LOCALIZED, ["[Virtual]"], gmail=False)
    with pytest.raises(ProtocolFailure):
        plan_folders(LOCALIZED, ["\\All"], gmail=False)


GMAIL = [
    F("INBOX"),
    F("[Gmail]", "\\Noselect"),
    F("[Gmail]/Alle Nachrichten", "\\All"),
    F("[Gmail]/Gesendet", "\\Sent"),
    F("[Gmail]/Markiert", "\\Flagged"),
    F("Work"),
]


def test_gmail_all_mail_once_and_folders_become_labels() -> None:
    assert plan_folders(GMAIL, [], gmail=True) == Plan(("[Gmail]/Alle Nachrichten",), None, True)
    plan = plan_folders(GMAIL, ["INBOX", "[Gmail]/Gesendet", "[Gmail]/Markiert", "Work"], gmail=True)
    assert plan.folders == ("[Gmail]/Alle Nachrichten",)
    assert plan.labels is not None
    assert plan.labels.matches(["\\Inbox"])
    assert plan.labels.matches(["\\Sent"])
    assert plan.labels.matches(["\\Starred"])
    assert plan.labels.matches(["work"])
    assert not plan.labels.matches(["\\Important", "Other"])
    assert not plan.labels.matches([])


def test_gmail_without_all_folder_falls_back_to_folders() -> None:
    plan = plan_folders([F("INBOX"), F("Sent", "\\Sent")], [], gmail=True)
    assert plan.folders == ("INBOX", "Sent") and not plan.gmail


def test_label_filter_inbox_spellings() -> None:
    f = LabelFilter(frozenset({"\\inbox"}))
    assert f.matches(["INBOX"]) and f.matches(["\\Inbox"])


def test_find_special_skips_noselect() -> None:
    assert find_special([F("X", "\\Archive", "\\Noselect"), F("Y", "\\Archive")], "\\ARCHIVE") == "Y"
    assert find_special(LOCALIZED, "\\All") is None


def test_body_groups_bounded_by_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import bccd.imap.sync as sync

    monkeypatch.setattr(sync, "GROUP_BYTES", 100)
    metas = [_Meta(1, 60), _Meta(2, 60), _Meta(3, 500), _Meta(4, 10, skip="too_big"), _Meta(5, 10)]
    groups = [[m.uid for m in g] for g in _groups(metas, 10)]
    assert groups == [[1], [2], [3], [4, 5]]  # a big message still gets a group of its own
    assert [[m.uid for m in g] for g in _groups(metas, 2)] == [[1], [2], [3], [4, 5]]
    small = [_Meta(i, 1) for i in range(5)]
    assert [len(g) for g in _groups(small, 2)] == [2, 2, 1]
