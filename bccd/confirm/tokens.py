"""Confirmation tokens: random, stored hashed, single use, compared in constant time.

``new_token()`` → 48 characters of lowercase base32 — 240 random bits (``secrets``),
without ``-`` or ``_``, so a token never looks like a command-line option and mail
clients that auto-link URLs never cut it short. Only ``token_hash(token)`` (SHA-256,
hex) is ever stored. ``well_formed(token)`` rejects
anything that cannot be one of ours before the database is asked. ``issue(alternate,
ttl, now)`` puts a fresh token on a pending alternate (replacing any older one, whose link
then stops working) and returns the token — the caller mails it and forgets it.
``same_hash`` compares two hashes in constant time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
import secrets

from bccd.addresses import hash_token
from bccd.store.models import Alternate

TOKEN_BYTES = 30
_TOKEN_RE = re.compile(r"^[a-z2-7]{48}$")


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower()


def token_hash(token: str) -> str:
    return hash_token(token)


def well_formed(token: str) -> bool:
    return bool(_TOKEN_RE.match(token))


def same_hash(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def issue(alternate: Alternate, ttl_seconds: int, now: dt.datetime) -> str:
    """A new token for ``alternate`` (pending), valid ``ttl_seconds`` from ``now``."""
    token = new_token()
    alternate.token_hash = token_hash(token)
    alternate.token_expires_at = now + dt.timedelta(seconds=ttl_seconds)
    return token


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/confirm/{token}"
