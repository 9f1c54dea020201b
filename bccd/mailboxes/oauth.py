"""The OAuth 2.0 client side of connecting a mailbox (SPEC §7), on Authlib.

Authlib's ``OAuth2Session`` (its ``requests`` integration; not its ``httpx`` one, which
warns on import in Authlib 1.9) does the protocol: the authorization URL with PKCE
(S256, RFC 7636) and ``state``, the authorization-code exchange and refresh (RFC 6749
§4.1, §6), client authentication (``client_secret_post``, which Google and Microsoft
both take). This module only says *what* to ask and turns answers into bccd's terms.
Every call here is blocking (HTTP): run it in a worker thread.

- :func:`provider` / :func:`configured` — ``[oauth.<name>]`` as a :class:`Provider`.
- :func:`authorization_url` — the consent URL for a state, a PKCE verifier and an
  optional OpenID nonce and login hint.
- :func:`exchange` — code + verifier → the token response (``Refused`` when the provider
  says no, e.g. a replayed code is ``invalid_grant``; ``Unavailable`` when it cannot be
  reached or answers 5xx).
- :func:`address_of` — the mailbox address: ``userinfo_url`` when configured, else the ID
  token in the token response. An ID token received directly from the token endpoint
  over TLS may be trusted without checking its signature (OpenID Connect Core §3.1.3.7,
  point 6); its ``iss``, ``aud`` and ``exp`` are still checked.
- :func:`refresh` — a new access token (and a rotated refresh token if the provider sends
  one) for stored credentials.

Reasons are one line, carry the provider's ``error`` code and never a token.

Authlib and ``requests`` are imported by the calls that talk HTTP, not with this module:
every command that reaches mailbox credentials (``imap sync``, ``serve``) would otherwise
pay about a tenth of a second for them, though only OAuth2 accounts ever use them.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bccd.config import Settings
from bccd.errors import BccdError, NotFound

if TYPE_CHECKING:
    import requests
    from authlib.integrations.requests_client import OAuth2Session

HTTP_TIMEOUT = 30.0
AUTH_METHOD = "client_secret_post"


class Refused(BccdError):
    """The provider refused (``invalid_grant``, ``invalid_client``, ``access_denied`` …)."""

    status = 400

    def __init__(self, reason: str, *, error: str = "", http_status: int = 0) -> None:
        super().__init__(reason)
        self.error = error
        self.http_status = http_status


class Unavailable(BccdError):
    """The provider could not be reached, or answered 5xx or nonsense."""

    status = 503

    def __init__(self, reason: str, *, tls: bool = False) -> None:
        super().__init__(reason)
        self.tls = tls


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    label: str
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str
    token_url: str
    userinfo_url: str
    scopes: tuple[str, ...]
    imap_host: str
    imap_port: int
    smtp_host: str
    smtp_port: int
    smtp_security: str
    mechanism: str
    authorize_params: tuple[tuple[str, str], ...]


def provider(settings: Settings, name: str) -> Provider:
    conf = settings.oauth.get(name)
    if conf is None:
        raise NotFound(f"no OAuth provider {name!r} is configured ([oauth.{name}])")
    smtp_port = conf.smtp_port or (465 if conf.smtp_security == "ssl" else 587)
    return Provider(
        name=name, label=conf.name or {"google": "Google", "microsoft": "Microsoft"}.get(
            name, name.replace("_", " ").replace("-", " ").title()),
        client_id=conf.client_id, client_secret=conf.client_secret,
        authorize_url=conf.authorize_url, token_url=conf.token_url,
        userinfo_url=conf.userinfo_url, scopes=tuple(conf.scopes), imap_host=conf.imap_host,
        imap_port=conf.imap_port, smtp_host=conf.smtp_host, smtp_port=smtp_port,
        smtp_security=conf.smtp_security, mechanism=conf.mechanism.upper(),
        authorize_params=tuple(sorted(conf.authorize_params.items())),
    )


def configured(settings: Settings) -> list[Provider]:
    return [provider(settings, name) for name in sorted(settings.oauth)]


def _session(client_id: str, client_secret: str, *, scope: str | None = None,
             redirect_uri: str | None = None) -> OAuth2Session:
    from authlib.integrations.requests_client import OAuth2Session

    s = OAuth2Session(client_id, client_secret or None, token_endpoint_auth_method=AUTH_METHOD,
                      scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256",
                      default_timeout=HTTP_TIMEOUT)
    # the system trust store where one is named (SSL_CERT_FILE), as for IMAP
    s.verify = os.environ.get("SSL_CERT_FILE") or True
    s.trust_env = False  # no proxies from the environment for token requests
    return s


def authorization_url(p: Provider, *, redirect_uri: str, state: str, code_verifier: str,
                      nonce: str | None = None, login_hint: str | None = None) -> str:
    extra: dict[str, str] = dict(p.authorize_params)
    if nonce:
        extra["nonce"] = nonce
    if login_hint:
        extra["login_hint"] = login_hint
    with _session(p.client_id, p.client_secret, scope=" ".join(p.scopes),
                  redirect_uri=redirect_uri) as s:
        url, _ = s.create_authorization_url(p.authorize_url, state=state,
                                            code_verifier=code_verifier, **extra)
    return str(url)


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    import requests
    from authlib.integrations.base_client.errors import OAuthError

    status: list[int] = []

    def keep(resp: requests.Response, *a: Any, **k: Any) -> requests.Response:
        status.append(resp.status_code)
        return resp

    session: OAuth2Session = fn.__self__
    session.hooks["response"].append(keep)
    try:
        token = fn(*args, **kwargs)
    except OAuthError as exc:
        code = status[-1] if status else 400
        error = str(exc.error or "error")
        raise Refused(f"{what} refused ({code} {error[:80]})", error=error, http_status=code) from None
    except requests.exceptions.SSLError as exc:
        raise Unavailable(f"{what}: TLS failed: {_short(exc)}", tls=True) from None
    except requests.exceptions.HTTPError:
        raise Unavailable(f"{what} failed ({status[-1] if status else '?'})") from None
    except (requests.exceptions.RequestException, OSError) as exc:
        raise Unavailable(f"{what} unreachable: {_short(exc)}") from None
    except ValueError:
        raise Unavailable(f"{what} answered non-JSON") from None
    if not isinstance(token, dict) or not token.get("access_token"):
        raise Refused(f"{what} returned no access_token", error="no_access_token")
    return dict(token)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exchange(p: Provider, *, redirect_uri: str, code: str, code_verifier: str) -> dict[str, Any]:
    """The authorization code for tokens (single use at the provider)."""
    with _session(p.client_id, p.client_secret, redirect_uri=redirect_uri) as s:
        return _call("OAuth2 code exchange", s.fetch_token, p.token_url,
                     grant_type="authorization_code", code=code, code_verifier=code_verifier)


def refresh(token_url: str, client_id: str, client_secret: str, refresh_token: str) -> dict[str, Any]:
    """A new access token for a refresh token; the answer may carry a rotated refresh token."""
    with _session(client_id, client_secret) as s:
        return _call("OAuth2 token refresh", s.refresh_token, token_url, refresh_token=refresh_token)


def _b64json(part: str) -> dict[str, Any]:
    data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def id_token_claims(id_token: str, *, client_id: str, issuer: str | None = None,
                    now: float | None = None) -> dict[str, Any]:
    """The claims of an ID token received from the token endpoint (see the docstring)."""
    try:
        claims = _b64json(id_token.split(".")[1])
    except (IndexError, ValueError):
        raise Refused("the ID token is not readable", error="invalid_id_token") from None
    aud = claims.get("aud")
    if client_id not in (aud if isinstance(aud, list) else [aud]):
        raise Refused("the ID token is for another client", error="invalid_id_token")
    if issuer is not None and claims.get("iss") != issuer:
        raise Refused("the ID token is from another issuer", error="invalid_id_token")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < (now or time.time()) - 120:
        raise Refused("the ID token has expired", error="invalid_id_token")
    return claims


def address_of(p: Provider, token: dict[str, Any]) -> str:
    """The mailbox's address, from ``userinfo_url`` or the ID token."""
    if p.userinfo_url:
        import requests

        with _session(p.client_id, p.client_secret) as s:
            s.token = token
            try:
                resp = s.get(p.userinfo_url, timeout=HTTP_TIMEOUT)
                info = resp.json() if resp.status_code == 200 else None
            except (requests.exceptions.RequestException, ValueError, OSError) as exc:
                raise Unavailable(f"OAuth2 userinfo unreachable: {_short(exc)}") from None
        if not isinstance(info, dict):
            raise Refused(f"OAuth2 userinfo refused ({resp.status_code})", error="userinfo")
    elif token.get("id_token"):
        info = id_token_claims(str(token["id_token"]), client_id=p.client_id)
    else:
        raise Refused("the provider told no address: configure userinfo_url or the openid "
                      "and email scopes", error="no_address")
    for key in ("email", "preferred_username", "upn"):
        value = info.get(key)
        if isinstance(value, str) and "@" in value:
            return value.strip()
    raise Refused("the provider told no email address for this account", error="no_address")
