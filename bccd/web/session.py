"""Signed-in sessions and CSRF for the Mail page.

A user signs in with their API token (the login form); the page then keeps a session
cookie ``bccd_session`` = ``<payload>.<mac>``: the payload (base64url JSON) names the user,
the first characters of their API-token hash and an expiry (``SESSION_TTL``); the MAC is
HMAC-SHA256 under a key derived from ``security.secret_key`` (older keys in
``old_secret_keys`` still verify, so the key can be rotated). Nothing is stored on the
server. A session ends when it expires, when the user signs out (the cookie is cleared),
when the user is disabled, or when their API token changes.

The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` when
``http.public_url`` is https.

CSRF: every state-changing form carries ``csrf`` = HMAC(key, "csrf" + the session's MAC)
— bound to the session, so it cannot be guessed or replayed across sessions. The login
form (no session yet) uses a double-submit cookie ``bccd_login`` (random, HttpOnly,
SameSite=Strict) equal to its hidden field. Independently, a POST whose ``Origin`` header
names another origin is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from bccd.config import Settings

COOKIE = "bccd_session"
LOGIN_COOKIE = "bccd_login"
SESSION_TTL = 12 * 3600


@dataclass(frozen=True, slots=True)
class SessionData:
    user_id: int
    token_tag: str
    expires: int
    mac: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"bccd web session v1", hashlib.sha256).digest()


def token_tag(api_token_hash: str) -> str:
    return api_token_hash[:16]


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.keys = [_key(k) for k in settings.secret_keys if k]
        if not self.keys:
            raise ValueError("security.secret_key is not set")
        self.secure = settings.http.base_url.lower().startswith("https://")

    def _mac(self, key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())

    def issue(self, user_id: int, api_token_hash: str, *, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_TTL)
        payload = _b64(json.dumps({"u": user_id, "t": token_tag(api_token_hash), "e": expires},
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._mac(self.keys[0], payload)}"

    def read(self, cookie: str | None, *, now: float | None = None) -> SessionData | None:
        if not cookie or len(cookie) > 512 or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not any(hmac.compare_digest(mac, self._mac(k, payload)) for k in self.keys):
            return None
        try:
            data = json.loads(_unb64(payload))
            user_id, tag, expires = int(data["u"]), str(data["t"]), int(data["e"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if expires < (now or time.time()):
            return None
        return SessionData(user_id, tag, expires, mac)

    def csrf(self, session: SessionData) -> str:
        return _b64(hmac.new(self.keys[0], b"csrf" + session.mac.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session: SessionData, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf(session), value or "")

    def cookie_kwargs(self, *, max_age: int | None = SESSION_TTL) -> dict[str, object]:
        return {"max_age": max_age, "path": "/", "httponly": True, "samesite": "lax",
                "secure": self.secure}


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
