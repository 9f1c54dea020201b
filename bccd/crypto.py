"""Secrets at rest: credentials encrypted under ``security.secret_key``.

``SecretBox(keys)`` takes the configured key strings, current key first
(``Settings.secret_keys``); each is stretched with HKDF-SHA256 into a Fernet key, and the
box is a ``MultiFernet`` over them: ``encrypt`` always uses the current key, ``decrypt``
tries every key, so a key listed in ``security.old_secret_keys`` still decrypts after a
rotation and ``rotate`` re-encrypts a token under the current key.

Failure: a token that no key opens (tampered, or every key that made it is gone) raises
:class:`SecretError`, whose message never contains key material or plaintext. Nothing
here logs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bccd.errors import BccdError

# Domain separation: the same secret_key also signs per-entity addresses (HMAC); the
# credential key is derived from it, never the secret itself.
_HKDF_SALT = b"bccd/secret-box/v1"
_HKDF_INFO = b"bccd credentials at rest"


class SecretError(BccdError):
    """A stored secret cannot be decrypted with any configured key."""


def derive_fernet_key(secret: str) -> bytes:
    """A Fernet key (urlsafe base64 of 32 bytes) derived from one configured secret."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Encrypt with the current key, decrypt with any configured key."""

    def __init__(self, keys: Sequence[str]) -> None:
        usable = [k for k in keys if k]
        if not usable:
            raise SecretError("security.secret_key is not set: cannot encrypt credentials")
        self._current = Fernet(derive_fernet_key(usable[0]))
        self._fernet = MultiFernet([self._current, *(Fernet(derive_fernet_key(k)) for k in usable[1:])])

    def __repr__(self) -> str:  # never show key material
        return "SecretBox(<keys hidden>)"

    def encrypt(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SecretError(
                "stored credentials cannot be decrypted with the configured secret keys"
                " (was security.secret_key changed without listing the old key in"
                " security.old_secret_keys?)"
            ) from None

    def is_current(self, token: str) -> bool:
        """True when ``token`` is encrypted under the current key (no rotation due)."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the current key (it must open with some key)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SecretError("stored credentials cannot be decrypted with any key") from None

    def encrypt_json(self, obj: dict[str, Any]) -> str:
        return self.encrypt(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())

    def decrypt_json(self, token: str) -> dict[str, Any]:
        value = json.loads(self.decrypt(token))
        if not isinstance(value, dict):
            raise SecretError("stored credentials are not a JSON object")
        return value
