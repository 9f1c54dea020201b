"""What archiving or deleting a thread asks of the mailbox's server
(``bccd.mailboxes.writeback``), by the mailbox's ``on_archive`` setting (SPEC §7)."""

from __future__ import annotations

import pytest

from bccd.mailboxes.writeback import server_action

pytestmark = pytest.mark.spec("7")


@pytest.mark.parametrize(
    ("action", "on_archive", "expected"),
    [
        ("archive", "none", None),
        ("archive", "archive", "archive"),
        ("archive", "delete", "delete"),
        ("delete", "none", None),
        ("delete", "archive", "delete"),
        ("delete", "delete", "delete"),
    ],
)
def test_writeback_server_action(action: str, on_archive: str, expected: str | None) -> None:
    assert server_action(action, on_archive) == expected
