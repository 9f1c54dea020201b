"""OpenID Connect sign-in to the Mail page (SPEC §9, ``[oidc]``), on Authlib and joserfc.

:func:`discover` reads ``<issuer>/.well-known/openid-configuration`` (cached per process
for ``DISCOVERY_TTL``) and checks its ``issuer`` is the configured one. The request
itself is an authorization code with PKCE, ``state`` and ``nonce`` (``mailboxes.consent``,
``mailboxes.oauth``); :func:`verified_email` checks the ID token the code gives: its RS256
(or other asymmetric) signature against the provider's JWKS (joserfc), then ``iss``,
``aud``, ``exp``, ``iat`` and ``nonce`` (Authlib's ``CodeIDToken``), and returns its
``email`` only when ``email_verified`` is true. Users are matched by that address
(their login address); nobody is created. Blocking: run in a worker thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from bccd.config import Settings
from bccd.errors import BccdError
from bccd.mailboxes.oauth import Provider

DISCOVERY_TTL = 3600.0
HTTP_TIMEOUT = 15.0
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


class OidcFailed(BccdError):
    status = 403


def _get_json(url: str) -> dict[str, Any]:
    try:
        resp = requests.get(url, timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        data = resp.json()
    except (requests.exceptions.RequestException, ValueError) as exc:
        raise OidcFailed(f"the sign-in provider cannot be reached: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise OidcFailed("the sign-in provider answered nonsense")
    return data


def discover(settings: Settings, *, fresh: bool = False) -> dict[str, Any]:
    issuer = settings.oidc.issuer
    with _lock:
        hit = _cache.get(issuer)
        if hit and not fresh and time.monotonic() - hit[0] < DISCOVERY_TTL:
            return hit[1]
    doc = _get_json(issuer + "/.well-known/openid-configuration")
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise OidcFailed("the sign-in provider's discovery names another issuer")
    with _lock:
        _cache[issuer] = (time.monotonic(), doc)
    return doc


def label(settings: Settings) -> str:
    from urllib.parse import urlsplit

    return settings.oidc.name or (urlsplit(settings.oidc.issuer).hostname or "single sign-on")


def provider(settings: Settings) -> Provider:
    doc = discover(settings)
    return Provider(
        name="oidc", label=label(settings), client_id=settings.oidc.client_id,
        client_secret=settings.oidc.client_secret,
        authorize_url=str(doc["authorization_endpoint"]), token_url=str(doc["token_endpoint"]),
        userinfo_url="", scopes=tuple(settings.oidc.scopes), imap_host="", imap_port=993,
        smtp_host="", smtp_port=0, smtp_security="ssl", mechanism="XOAUTH2", authorize_params=())


def verified_email(settings: Settings, token: dict[str, Any], nonce: str) -> str:
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcFailed("the sign-in provider sent no ID token (is the openid scope allowed?)")
    doc = discover(settings)
    for attempt in (0, 1):  # a key we have not seen: the provider rotated; read the JWKS again
        keys = KeySet.import_key_set(_get_json(str(doc["jwks_uri"])))  # type: ignore[arg-type]
        try:
            decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            break
        except JoseError as exc:
            if attempt:
                raise OidcFailed(f"the ID token's signature does not verify ({exc.error})") from None
            doc = discover(settings, fresh=True)
    claims = CodeIDToken(decoded.claims, decoded.header, options={
        "iss": {"essential": True, "value": settings.oidc.issuer},
        "aud": {"essential": True, "value": settings.oidc.client_id},
        "nonce": {"essential": True, "value": nonce},
    }, params={"nonce": nonce})
    try:
        claims.validate(leeway=120)
    except Exception as exc:  # authlib's claim errors
        raise OidcFailed(f"the ID token is not valid: {exc}") from None
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise OidcFailed("the sign-in provider told no email address (is the email scope allowed?)")
    if claims.get("email_verified") is not True:
        raise OidcFailed(f"the sign-in provider has not verified {email}: bccd signs in verified "
                         "addresses only")
    return email.strip()
