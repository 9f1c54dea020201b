"""Expired access grants go in the retention pass: a stolen, expired session cookie or a
sign-in link leaves nothing usable — and nothing at all a day after it expired."""

from __future__ import annotations

import datetime as dt

import pytest

from bccd.lifecycle import retention
from bccd.store.db import Database
from bccd.store.grants import OAuthState, SigninLink, WebSession
from tests.unit.conftest import alice

pytestmark = pytest.mark.spec("10")

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def test_sessions_links_and_oauth_states_expired_a_day_ago_are_purged(db: Database) -> None:
    with db.transaction() as s:
        user = alice(s)
        for n, expires in enumerate((NOW - dt.timedelta(days=2), NOW - dt.timedelta(hours=2),
                                     NOW + dt.timedelta(hours=1))):
            s.add(WebSession(token_hash=f"s{n}".ljust(64, "0"), user_id=user.id, token_tag="t",
                             created_at=expires - dt.timedelta(hours=12), expires_at=expires))
            s.add(SigninLink(user_id=user.id, token_hash=f"l{n}".ljust(64, "0"),
                             created_at=expires - dt.timedelta(minutes=15), expires_at=expires))
            s.add(OAuthState(state_hash=f"o{n}".ljust(64, "0"), purpose="signin", provider="x",
                             secret_enc="", created_at=expires - dt.timedelta(minutes=10),
                             expires_at=expires))
    assert retention.purge_expired_grants(db, now=NOW, batch=1) == 3
    with db.read() as s:
        for model in (WebSession, SigninLink, OAuthState):
            assert s.query(model).count() == 2  # the one expired 2 h ago still answers
