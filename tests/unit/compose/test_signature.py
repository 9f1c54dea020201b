"""A signature saved from the settings page's editor (SPEC §12): what an emptied editor
leaves behind is no signature, so saving other settings adds no stray "-- " to mail."""

from __future__ import annotations

import pytest

from bccd.compose.signature import set_signature
from bccd.store.db import Database
from bccd.store.models import User


@pytest.mark.parametrize("html,kept", [
    ("<div><br></div>", ""), ("<p>&nbsp;</p>", ""), ("  ", ""), ("<div><br><br></div>", ""),
    ("<div>Alice</div>", "<div>Alice</div>"),
    ('<img src="https://example.com/logo.png">', '<img src="https://example.com/logo.png">'),
])
def test_an_empty_editor_is_no_signature(db: Database, html: str, kept: str) -> None:
    with db.transaction() as s:
        user = s.query(User).filter_by(email="alice@acme.test").one()
        assert set_signature(s, user, html) == kept
