"""``[oauth.<provider>]`` and ``[oidc]`` (SPEC §7, §9, §10): typed, validated settings for
the OAuth 2.0 providers users consent at to connect their mailbox, and for OpenID Connect
sign-in to the Mail page. Part of ``bccd.config`` (which includes these sections in
``Settings``); a module of its own to keep each file to one responsibility.

:func:`with_presets` fills ``google`` and ``microsoft`` from ``OAUTH_PRESETS`` (their real
endpoints, IMAP/SMTP scopes and mail hosts), so those sections need only a client id and
secret; every other section must name its endpoints, scopes and IMAP host, and an error
names the key (``oauth.corp.token_url: …``). Endpoints are https (plain http only to a
loopback address, for a provider run locally).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# the endpoints and mail hosts of the two providers most mailboxes are at; an
# ``[oauth.google]`` or ``[oauth.microsoft]`` section need only give the client id and secret
OAUTH_PRESETS: dict[str, dict[str, Any]] = {
    "google": {
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "userinfo_url": "https://openidconnect.googleapis.com/v1/userinfo",
        "scopes": ["openid", "email", "https://mail.google.com/"],
        "imap_host": "imap.gmail.com", "imap_port": 993,
        "smtp_host": "smtp.gmail.com", "smtp_port": 465, "smtp_security": "ssl",
        "authorize_params": {"access_type": "offline", "prompt": "consent"},
    },
    "microsoft": {
        "authorize_url": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "token_url": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "userinfo_url": "",  # the address comes from the ID token (Graph would need its own token)
        "scopes": ["openid", "email", "offline_access",
                   "https://outlook.office.com/IMAP.AccessAsUser.All",
                   "https://outlook.office.com/SMTP.Send"],
        "imap_host": "outlook.office365.com", "imap_port": 993,
        "smtp_host": "smtp.office365.com", "smtp_port": 587, "smtp_security": "starttls",
        "authorize_params": {"prompt": "select_account"},
    },
}


def _endpoint(value: str) -> str:
    """https, or http to a loopback address (a local provider, in tests)."""
    if not value:
        return value
    m = re.match(r"^(https?)://(\[[^\]]+\]|[^/:?#\s]+)(:\d+)?([/?#]\S*)?$", value)
    if not m:
        raise ValueError("expected an https:// URL")
    host = m.group(2).strip("[]")
    if m.group(1) == "http":
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("must be https:// (plain http only to a loopback address)")
    return value


class OAuthProviderSettings(_Section):
    """``[oauth.<name>]`` (SPEC §7): an OAuth 2.0 provider users consent at to connect
    their mailbox. ``google`` and ``microsoft`` fill what is left out from ``OAUTH_PRESETS``."""

    client_id: str
    client_secret: str = ""
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    scopes: list[str] = Field(default_factory=list)
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    smtp_host: str = ""
    smtp_port: int = Field(default=0, ge=0, le=65535)  # 0: 465 (ssl) or 587 (starttls)
    smtp_security: Literal["ssl", "starttls"] = "ssl"
    mechanism: Literal["xoauth2", "oauthbearer"] = "xoauth2"
    name: str = ""  # shown on the "Sign in with …" button; default: the section name, titled
    authorize_params: dict[str, str] = Field(default_factory=dict)

    @field_validator("authorize_url", "token_url", "userinfo_url")
    @classmethod
    def _urls(cls, v: str) -> str:
        return _endpoint(v.strip())

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()


class OidcSettings(_Section):
    """``[oidc]`` (SPEC §9): single sign-on for the Mail page through an OpenID Connect
    provider, found by discovery at ``<issuer>/.well-known/openid-configuration``; users
    are matched by their verified email address. Empty ``issuer``: off."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    name: str = ""  # the button's label ("Sign in with …"); default: the issuer's host
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        return _endpoint(v.strip()).rstrip("/")

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)




def with_presets(v: Any) -> Any:
    """Fill ``google``/``microsoft`` from ``OAUTH_PRESETS``; every other provider must
    name its endpoints, scopes and IMAP host (the error names the key)."""
    if not isinstance(v, dict):
        return v
    out: dict[str, Any] = {}
    for name, section in v.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", str(name)):
            raise ValueError(f"oauth.{name}: a provider name is lowercase letters, digits, - and _")
        if not isinstance(section, dict):
            out[name] = section
            continue
        merged = {**OAUTH_PRESETS.get(name, {}), **section}
        for key in ("authorize_url", "token_url", "scopes", "imap_host"):
            if not merged.get(key):
                raise ValueError(f"oauth.{name}.{key}: required for a provider other than "
                                 "google or microsoft")
        out[name] = merged
    return out
