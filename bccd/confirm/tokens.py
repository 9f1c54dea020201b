"""Confirmation tokens: random, stored hashed, single use, compared in constant time.

``new_token()`` → 48 characters of lowercase base32 — 240 random bits (``secrets``),
without ``-`` or ``_``, so a token never looks like a command-line option and mail
clients that auto-link URLs never cut it short. Only ``token_hash(token)`` (SHA-256,
hex) is ever stored (``confirm.flow`` puts it on the pending alternate, replacing any
older one, whose link then stops working). ``well_formed(token)`` rejects anything that
cannot be one of ours before the database is asked. ``same_hash`` compares two hashes in
constant time; ``confirm_url`` is the link mailed with a token.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets

from bccd.addresses import hash_token

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


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/confirm/{token}"
