"""Tracking tokens (SPEC §13): signed with ``secret_key``, verified with the old keys too,
and refused — all alike, with no database — when tampered, truncated, swapped between
messages, links or kinds, signed by a key rotated out, or expired."""

from __future__ import annotations

import base64

import pytest

from bccd.tracking import tokens
from bccd.tracking.tokens import DECOY, Claim, derive, issue, verify

pytestmark = pytest.mark.spec("13")

KEY = derive("current-secret")
OLD = derive("old-secret")
NOW = 1_800_000_000
DAY = 86400


def _ok(token: str, kind: str = "c", keys: list[bytes] | None = None, now: int = NOW,
        ttl: int = 365 * DAY) -> Claim | None:
    return verify(keys if keys is not None else [KEY], kind, token, now=now, ttl=ttl)


def _bytes(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_token_names_the_message_and_the_link_and_verifies() -> None:
    t = issue(KEY, "c", 123456789, 3, NOW)
    assert len(t) == tokens.TOKEN_CHARS
    assert _ok(t) == Claim("c", 123456789, 3, NOW)
    assert _ok(issue(KEY, "c", 7, DECOY, NOW)) == Claim("c", 7, DECOY, NOW)
    assert _ok(issue(KEY, "o", 7, 0, NOW), "o") == Claim("o", 7, 0, NOW)


def test_an_old_key_still_verifies_and_a_key_rotated_out_does_not() -> None:
    t = issue(OLD, "c", 42, 0, NOW)
    assert _ok(t, keys=[KEY, OLD]) == Claim("c", 42, 0, NOW)
    assert _ok(t, keys=[KEY]) is None
    assert _ok(t, keys=[]) is None


@pytest.mark.parametrize("field,offset", [("version", 0), ("message", 1), ("message", 8),
                                          ("link", 10), ("issued", 12), ("issued", 14),
                                          ("mac", 15), ("mac", 30)])
def test_every_changed_byte_is_refused(field: str, offset: int) -> None:
    raw = _bytes(issue(KEY, "c", 99, 2, NOW))
    for flip in (0x01, 0x80, 0xFF):
        changed = bytearray(raw)
        changed[offset] ^= flip
        assert _ok(_token(changed)) is None, (field, offset, flip)


def test_another_messages_signature_another_link_or_kind_is_refused() -> None:
    a = _bytes(issue(KEY, "c", 1001, 0, NOW))
    b = _bytes(issue(KEY, "c", 1002, 0, NOW))
    assert _ok(_token(a[:15] + b[15:])) is None          # a's claim, b's MAC
    assert _ok(_token(b[:15] + a[15:])) is None
    link1 = _bytes(issue(KEY, "c", 1001, 1, NOW))
    assert _ok(_token(a[:15] + link1[15:])) is None      # link 0 with link 1's MAC
    assert _ok(issue(KEY, "o", 1001, 0, NOW), "c") is None   # a pixel token is no link token
    assert _ok(issue(KEY, "c", 1001, 0, NOW), "o") is None


@pytest.mark.parametrize("token", [
    "", "x", "A" * 41, "A" * 43, "A" * 42, "=" * 42, "../../../../etc/passwd" + "A" * 20,
    "%2e%2e" + "A" * 36, "A" * 41 + "!", "A" * 4000, "\u00e9" * 42, "A" * 41 + "\n",
])
def test_garbage_of_any_shape_is_refused(token: str) -> None:
    assert _ok(token) is None and _ok(token, "o") is None


def test_truncated_or_lengthened_tokens_are_refused() -> None:
    t = issue(KEY, "c", 5, 0, NOW)
    for cut in (1, 2, 10, 41):
        assert _ok(t[:-cut]) is None
    assert _ok(t + "A") is None and _ok(t + "AAAA") is None


def test_a_re_encoding_of_the_same_bytes_is_not_the_issued_token() -> None:
    t = issue(KEY, "c", 5, 0, NOW)
    last = t[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # base64 of 31 bytes leaves 2 unused bits in the last character
    twin = t[:-1] + alphabet[alphabet.index(last) ^ 1]
    assert _bytes(twin) == _bytes(t)
    assert _ok(twin) is None


def test_expired_and_future_tokens_are_refused() -> None:
    t = issue(KEY, "c", 5, 0, NOW)
    assert _ok(t, now=NOW + 10 * DAY, ttl=10 * DAY) is None
    assert _ok(t, now=NOW + 10 * DAY - 1, ttl=10 * DAY) is not None
    assert _ok(t, now=NOW - tokens.SKEW - 1) is None
    assert _ok(t, now=NOW - tokens.SKEW) is not None


def test_a_pixel_token_names_no_link() -> None:
    raw = _bytes(issue(KEY, "o", 5, 0, NOW))
    with pytest.raises(ValueError):
        issue(KEY, "x", 5, 0, NOW)
    # a pixel token with a link index set would need a MAC only the key can make
    assert raw[9:11] == b"\x00\x00"
