"""Tracking tokens (SPEC §13): what ``/t/o/<token>`` (the pixel) and ``/t/c/<token>`` (a
link) name, signed so that nobody can make one up.

A token is 31 bytes in unpadded base64url (42 characters): 15 bytes of claim —
version (1), the tracked message's random id (8), the link's index (2; ``0xffff`` is the
hidden decoy link, 0 for the pixel), when it was issued (4, Unix seconds) — then 16
bytes of MAC: HMAC-SHA256 under a key derived from ``security.secret_key``, over the
token's kind (``o`` or ``c``: a pixel token is no link token) and the claim.

``issue(key, kind, tracking_id, link, issued)`` makes one; ``verify(keys, kind, token,
now=…, ttl=…)`` → ``Claim`` or None. Verification is pure (no database) and refuses,
alike: any other length or alphabet, an unknown version, a MAC that no key in ``keys``
(the current key first, then ``old_secret_keys``) made — compared in constant time
against every key —, a token issued in the future (beyond a few minutes of clock skew)
or longer ago than ``ttl`` (``tracking.ttl``). The caller answers all of them with the
same ``404``. The redirect target is never in the token: a valid link token names an
index into the URLs stored with the message (``bccd.tracking.hits``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

VERSION = 1
KINDS = ("o", "c")
DECOY = -1                    # a Claim's link for the hidden decoy link
_DECOY_WIRE = 0xFFFF
_CLAIM = struct.Struct(">BQHI")
MAC_BYTES = 16
TOKEN_CHARS = 42              # base64url of 15 + 16 bytes, without padding
SKEW = 300                    # seconds a token may seem to come from the future
MAX_LINKS = _DECOY_WIRE       # link indexes 0 … 65534
_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_CHARS}}}$")


@dataclass(frozen=True, slots=True)
class Claim:
    kind: str            # "o" | "c"
    tracking_id: int
    link: int            # click: the link's index, or DECOY; open: 0
    issued: int          # Unix seconds


def derive(secret: str) -> bytes:
    """The tracking key of one ``security`` secret key."""
    return hmac.new(secret.encode(), b"bccd tracking v1", hashlib.sha256).digest()


def _mac(key: bytes, kind: str, claim: bytes) -> bytes:
    return hmac.new(key, kind.encode() + claim, hashlib.sha256).digest()[:MAC_BYTES]


def issue(key: bytes, kind: str, tracking_id: int, link: int, issued: int) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    if not 0 < tracking_id < 2**63:
        raise ValueError("tracking id out of range")
    wire = _DECOY_WIRE if link == DECOY else link
    if not 0 <= wire <= _DECOY_WIRE or (link != DECOY and link >= MAX_LINKS):
        raise ValueError("link index out of range")
    claim = _CLAIM.pack(VERSION, tracking_id, wire, issued)
    return base64.urlsafe_b64encode(claim + _mac(key, kind, claim)).decode().rstrip("=")


def verify(keys: list[bytes], kind: str, token: str, *, now: int, ttl: int) -> Claim | None:
    if kind not in KINDS or not keys or not _TOKEN.match(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _CLAIM.size + MAC_BYTES:
        return None
    claim, mac = raw[:_CLAIM.size], raw[_CLAIM.size:]
    # the same work whatever the token: every key is tried, the comparison is constant-time
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_mac(key, kind, claim), mac)
    # a re-encoding of the same bytes (base64's unused low bits) is not the issued token
    if not ok or base64.urlsafe_b64encode(raw).decode().rstrip("=") != token:
        return None
    version, tracking_id, wire, issued = _CLAIM.unpack(claim)
    if version != VERSION or tracking_id == 0:
        return None
    if issued > now + SKEW or now - issued >= ttl:
        return None
    if kind == "o" and wire != 0:
        return None
    return Claim(kind, tracking_id, DECOY if wire == _DECOY_WIRE else wire, issued)
