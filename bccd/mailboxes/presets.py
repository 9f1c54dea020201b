"""Mailbox provider presets (SPEC §7): the data file ``presets.toml`` beside this module.

:func:`presets` → every preset, in the file's order, as frozen :class:`Preset` records
(read and checked once; a broken file raises ``ValueError`` naming the entry and key —
a test reads it, so it never ships broken). :func:`get` finds one by id (``NotFound``);
:meth:`Preset.as_dict` is the public JSON shape (``GET /api/v1/me/mailboxes/providers``).

A preset fills what a user would otherwise have to look up: IMAP and submission host,
port and security, whether the provider wants OAuth consent or an app password, and the
provider's own authserv-id for the direction of synced mail. ``imap = false`` marks an
entry shown only to say it cannot be synced (Exchange ActiveSync).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bccd.errors import Invalid

DATA = Path(__file__).resolve().parent / "presets.toml"
AUTH_KINDS = ("oauth", "app_password", "password")
SECURITY = ("ssl", "starttls")


@dataclass(frozen=True, slots=True)
class Preset:
    id: str
    name: str
    imap_host: str
    imap_port: int
    imap_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    auth: str
    oauth: str | None
    authserv_ids: tuple[str, ...]
    username: str
    docs: str
    notes: str
    imap: bool = True

    @property
    def host_required(self) -> bool:
        """The user types the server (their organisation's, or another IMAP host)."""
        return not self.imap_host

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "imap": self.imap,
            "imap_host": self.imap_host or None, "imap_port": self.imap_port,
            "imap_security": self.imap_security,
            "smtp_host": self.smtp_host or None, "smtp_port": self.smtp_port,
            "smtp_security": self.smtp_security,
            "auth": self.auth, "oauth": self.oauth, "authserv_ids": list(self.authserv_ids),
            "username": self.username, "docs": self.docs, "notes": self.notes,
        }


def _preset(key: str, v: dict[str, Any]) -> Preset:
    def need(name: str, kind: type) -> Any:
        if name not in v or not isinstance(v[name], kind) or isinstance(v[name], bool) != (kind is bool):
            raise ValueError(f"presets.toml [{key}]: {name} is missing or not a {kind.__name__}")
        return v[name]

    known = {"name", "imap_host", "imap_port", "imap_security", "smtp_host", "smtp_port",
             "smtp_security", "auth", "oauth", "authserv_ids", "username", "docs", "notes", "imap"}
    extra = set(v) - known
    if extra:
        raise ValueError(f"presets.toml [{key}]: unknown key {sorted(extra)[0]}")
    p = Preset(
        id=key, name=need("name", str), imap_host=need("imap_host", str),
        imap_port=need("imap_port", int), imap_security=need("imap_security", str),
        smtp_host=need("smtp_host", str), smtp_port=need("smtp_port", int),
        smtp_security=need("smtp_security", str), auth=need("auth", str),
        oauth=v.get("oauth") or None, authserv_ids=tuple(need("authserv_ids", list)),
        username=need("username", str), docs=need("docs", str), notes=need("notes", str),
        imap=bool(v.get("imap", True)),
    )
    for name in ("imap_security", "smtp_security"):
        if getattr(p, name) not in SECURITY:
            raise ValueError(f"presets.toml [{key}]: {name} must be ssl or starttls")
    for name in ("imap_port", "smtp_port"):
        if not 1 <= getattr(p, name) <= 65535:
            raise ValueError(f"presets.toml [{key}]: {name} is out of range")
    if p.auth not in AUTH_KINDS:
        raise ValueError(f"presets.toml [{key}]: auth must be one of {', '.join(AUTH_KINDS)}")
    if (p.auth == "oauth") != (p.oauth is not None):
        raise ValueError(f"presets.toml [{key}]: oauth names the provider exactly when auth = oauth")
    if not p.docs.startswith("https://"):
        raise ValueError(f"presets.toml [{key}]: docs must be an https:// page")
    return p


@functools.cache
def presets() -> tuple[Preset, ...]:
    data = tomllib.loads(DATA.read_text(encoding="utf-8"))
    return tuple(_preset(key, value) for key, value in data.items())


def get(preset_id: str) -> Preset:
    for p in presets():
        if p.id == preset_id:
            return p
    raise Invalid(f"provider: no mailbox provider {preset_id!r}")


def for_oauth(provider: str) -> Preset | None:
    """The first preset that consents through ``[oauth.<provider>]`` (its hosts and
    authserv-ids fill an OAuth mailbox), if any."""
    return next((p for p in presets() if p.oauth == provider), None)
