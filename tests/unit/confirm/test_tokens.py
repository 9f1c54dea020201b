"""Confirmation tokens (``bccd.confirm.tokens``): random, base32, stored only hashed; the
confirmation URL."""

from __future__ import annotations

import hashlib

import pytest

from bccd.confirm import tokens
from tests.unit.conftest import make_settings

pytestmark = pytest.mark.spec("6")


def test_tokens_are_random_base32_and_stored_only_as_sha256() -> None:
    many = {tokens.new_token() for _ in range(200)}
    assert len(many) == 200
    assert all(tokens.well_formed(t) and len(t) == 48 for t in many)
    t = many.pop()
    assert tokens.token_hash(t) == hashlib.sha256(t.encode()).hexdigest()
    assert not tokens.well_formed("-" + t[1:]) and not tokens.well_formed(t.upper())
    assert tokens.same_hash("ab", "ab") and not tokens.same_hash("ab", "ac")
    assert not tokens.same_hash(None, "ab")


def test_public_url_defaults_to_the_http_listener(tmp_path) -> None:
    s = make_settings(tmp_path, http={"public_url": "", "listen": "127.0.0.1:8099"})
    assert tokens.confirm_url(s.http.base_url, "t") == "http://127.0.0.1:8099/confirm/t"
