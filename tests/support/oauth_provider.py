"""A real OAuth 2.0 authorization server and OpenID Connect provider for tests, on loopback.

Built on Authlib's server components — ``authlib.oauth2.rfc6749.AuthorizationServer`` with
its ``AuthorizationCodeGrant`` and ``RefreshTokenGrant``, ``rfc7636.CodeChallenge``
(PKCE, S256 only and required), ``authlib.oidc.core.OpenIDCode`` (RS256 ID tokens) and
``UserInfoEndpoint``, ``rfc7662.IntrospectionEndpoint``, ``rfc7009.RevocationEndpoint`` —
and ``joserfc`` (Authlib's own JOSE library since 1.7; ``authlib.jose`` is deprecated
and warns on import) for the signing key and the JWKS. Served by ``wsgiref`` in a
thread on ``127.0.0.1`` on a free port; requests are handled one at a time.

Use::

    with OAuthProvider() as idp:
        idp.register_client("bccd", "s3cret", ["http://127.0.0.1:8025/oauth/callback"])
        idp.login_as("alice@mail.test", name="Alice")
        # … the code under test follows idp.issuer's discovery document …

    # or a grant without the browser dance (as oauth.py's grant()):
    tokens = idp.grant("alice@mail.test", client_id="bccd")   # access + refresh token

Endpoints (all under ``base_url``, which is also the ``issuer``):

- ``GET /.well-known/openid-configuration`` — discovery; ``GET /jwks`` — public keys.
- ``GET /authorize`` — authorization code with PKCE (``code_challenge_method=S256``
  required); ``redirect_uri`` must be one registered for the client (else ``400``, no
  redirect); ``state`` is passed back. Consent is automatic for the user set with
  :meth:`login_as`; nobody logged in → a ``200`` "sign in" page (no redirect);
  :meth:`deny_next` → the next request redirects with ``error=access_denied``.
- ``POST /token`` — ``authorization_code`` (single use: a replayed code is
  ``invalid_grant`` and revokes the tokens issued for it) and ``refresh_token``
  (rotating by default: the used refresh token is revoked); client authentication
  ``client_secret_basic`` or ``client_secret_post`` (``none`` for a public client
  registered without a secret). With the ``openid`` scope the answer carries an RS256
  ``id_token`` (``iss``, ``aud`` = client id, ``sub``, ``email``/``email_verified`` with
  scope ``email``, ``name`` with ``profile``, ``nonce`` when given, ``at_hash``).
- ``GET|POST /userinfo`` — Bearer access token with ``openid`` scope →
  ``{sub, email, email_verified, name}`` (filtered by scope).
- ``POST /introspect`` — RFC 7662 for Dovecot's ``oauth2`` passdb, answered as
  ``tests/support/oauth.py`` does: ``{"active": true, "username": <email>, …}``, else
  ``{"active": false}``. The caller authenticates with HTTP Basic as a resource-server
  client: :attr:`introspection_url` carries those credentials in its userinfo part,
  which Dovecot turns into an ``Authorization`` header — pass it to
  ``Dovecot(oauth_introspection_url=…)`` and Dovecot accepts this provider's access
  tokens over XOAUTH2 and OAUTHBEARER (IMAP, and Postfix submission through Dovecot).
- ``POST /revoke`` — RFC 7009 (revokes the whole grant the token belongs to).

Test controls: :meth:`register_client`, :meth:`login_as` / :meth:`logout`,
:meth:`deny_next`, :meth:`set_email_verified`, :meth:`grant`, :meth:`expire_access_tokens`,
:meth:`revoke`, :meth:`fail_next_token` (e.g. ``503 temporarily_unavailable``),
:meth:`rotate_signing_key`, :meth:`token_owner`; ``access_ttl`` and ``rotate_refresh_tokens`` may be changed
at any time; counters ``token_requests`` (a ``Counter`` by ``grant_type``),
``authorize_requests``, ``userinfo_requests``, ``introspections``, ``revocations``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import secrets
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    ResourceProtector,
    TokenMixin,
    grants,
    scope_to_list,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo, UserInfoEndpoint
from joserfc.jwk import RSAKey

from tests.support.ports import free_port

DEFAULT_SCOPES = (
    "openid",
    "email",
    "profile",
    "offline_access",
    "https://mail.google.com/",
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
)
RESOURCE_SERVER_ID = "dovecot"
CODE_TTL = 600.0


# ---------------------------------------------------------------- models


@dataclass
class User:
    email: str
    name: str
    email_verified: bool = True
    sub: str = ""

    def __post_init__(self) -> None:
        if not self.sub:
            # stable for an address, opaque, numeric like Google's
            self.sub = str(int(hashlib.sha256(self.email.lower().encode()).hexdigest()[:15], 16))


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    scopes: frozenset[str]
    resource_server: bool = False
    client_metadata: dict[str, Any] = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in scope_to_list(scope or "") or [] if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(
            self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint in ("introspection", "revocation") and self.resource_server:
            return method == "client_secret_basic"
        if self.resource_server:
            return False
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return not self.resource_server and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return not self.resource_server and grant_type in ("authorization_code", "refresh_token")


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float
    family: str
    used: bool = False

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class Token(TokenMixin):
    client: Client
    user: User
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    family: str  # one authorization: revoking a grant revokes all its tokens
    access_revoked: bool = False
    refresh_revoked: bool = False
    expired: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.expired or time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


# ---------------------------------------------------------------- HTTP glue


@dataclass
class _HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    path: str

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> _HttpRequest:
        headers = {}
        for k, v in environ.items():
            if k.startswith("HTTP_"):
                headers["-".join(p.capitalize() for p in k[5:].split("_"))] = v
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        form: dict[str, list[str]] = {}
        n = int(environ.get("CONTENT_LENGTH") or 0)
        if n and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(environ["wsgi.input"].read(n).decode(), keep_blank_values=True)
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        path = environ.get("PATH_INFO", "/")
        url = f"http://{host}{path}"
        if environ.get("QUERY_STRING"):
            url += "?" + environ["QUERY_STRING"]
        return cls(environ["REQUEST_METHOD"], url, headers, query, form, path)


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items()}

    @property
    def datalist(self) -> collections.defaultdict[str, list[str]]:
        return collections.defaultdict(list, self._values)


class _OAuth2Request(OAuth2Request):
    def __init__(self, req: _HttpRequest) -> None:
        super().__init__(req.method, req.url, headers=req.headers)
        self._req = req
        merged = {k: list(v) for k, v in req.query.items()}
        for k, v in req.form.items():
            merged.setdefault(k, []).extend(v)
        self.payload = _Payload(merged)

    @property
    def args(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._req.query.items()}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._req.form.items()}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection (Dovecot's introspection must not wait behind a slow
    client); the provider's lock serializes the work itself."""

    daemon_threads = True


# ---------------------------------------------------------------- Authlib pieces


class _Server(AuthorizationServer):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__(scopes_supported=list(provider.scopes))
        self.provider = provider

    def query_client(self, client_id: str) -> Client | None:
        return self.provider._clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider._save_token(token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _OAuth2Request(request)

    def create_json_request(self, request: Any) -> Any:
        return _OAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[
            int, bytes, list[tuple[str, str]]]:
        if isinstance(body, dict):
            body = json.dumps(body)
        return status, (body or "").encode(), list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @property
    def provider(self) -> OAuthProvider:
        return self.server.provider  # type: ignore[no-any-return]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.provider._codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.client.get_allowed_scope(request.payload.scope),
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=int(time.time()),
            expires_at=time.time() + CODE_TTL,
            family=secrets.token_hex(8),
        )
        if data.get("nonce"):
            self.provider._nonces.add((request.client.get_client_id(), data["nonce"]))

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        item = self.provider._codes.get(code)
        if item is None or item.client_id != client.client_id:
            return None
        if item.used:
            # RFC 6749 §4.1.2: a code used twice — refuse, and revoke what it gave
            self.provider._revoke_family(item.family)
            return None
        if item.expires_at <= time.time():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        authorization_code.used = True

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @property
    def provider(self) -> OAuthProvider:
        return self.server.provider  # type: ignore[no-any-return]

    def issue_token(self, user: User, refresh_token: Token) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.get_scope()
        token: dict[str, Any] = self.generate_token(
            user=user, scope=scope, include_refresh_token=self.provider.rotate_refresh_tokens)
        return token

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = self.provider._by_refresh.get(refresh_token)
        if token is None or token.refresh_revoked:
            return None
        return token

    def authenticate_user(self, refresh_token: Token) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if self.provider.rotate_refresh_tokens:
            refresh_token.refresh_revoked = True


class _S256Challenge(CodeChallenge):
    """PKCE required for every client, S256 only (as Google and Microsoft allow)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE is required)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


def _user_info(user: User, scope: str) -> UserInfo:
    info = UserInfo(sub=user.sub, email=user.email, email_verified=user.email_verified, name=user.name)
    return info.filter(scope)


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return (request.payload.client_id, nonce) in self.provider._nonces

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider._keys[-1]

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "typ": "JWT", "kid": str(self.provider._keys[-1].kid)}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": client.client_id, "azp": client.client_id}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return _user_info(user, scope)


class _Protector(ResourceProtector):
    """Authlib's base ResourceProtector has no ``acquire_token`` (the framework
    integrations add one); ours reads the request being served."""

    def __init__(self) -> None:
        super().__init__()
        self.current: OAuth2Request | None = None

    def acquire_token(self, scopes: str | list[str] | None = None) -> Token:
        if isinstance(scopes, str):
            scopes = [scopes]
        token: Token = self.validate_request(scopes, self.current)
        return token


class _BearerValidator(BearerTokenValidator):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> Token | None:
        return self.provider._by_access.get(token_string)


class _UserInfo(UserInfoEndpoint):
    def __init__(self, provider: OAuthProvider, protector: _Protector) -> None:
        super().__init__(resource_protector=protector)
        self.provider = provider

    def get_issuer(self) -> str:
        return self.provider.issuer

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return _user_info(user, scope)

    def resolve_private_key(self) -> RSAKey:
        return self.provider._keys[-1]


class _Introspection(IntrospectionEndpoint):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__()
        self.provider = provider

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        # access tokens only: Dovecot introspects those; a refresh token is "not active"
        return self.provider._by_access.get(token_string)

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return client.resource_server or token.client.client_id == client.client_id

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "username": token.user.email,
            "sub": token.user.sub,
            "scope": token.scope,
            "client_id": token.client.client_id,
            "token_type": "Bearer",
            "iat": int(token.issued_at),
            "exp": int(token.issued_at + token.expires_in),
            "iss": self.provider.issuer,
        }


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__()
        self.provider = provider

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.provider._by_access.get(token_string) or self.provider._by_refresh.get(token_string)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        self.provider.revocations += 1
        self.provider._revoke_family(token.family)


# ---------------------------------------------------------------- the provider


class OAuthProvider:
    def __init__(
        self,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        access_ttl: int = 3600,
        rotate_refresh_tokens: bool = True,
    ) -> None:
        self.scopes = tuple(scopes)
        self.access_ttl = access_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.port = free_port()
        self.host = "127.0.0.1"
        self.token_requests: collections.Counter[str] = collections.Counter()
        self.authorize_requests = 0
        self.userinfo_requests = 0
        self.introspections = 0
        self.revocations = 0
        self._lock = threading.RLock()
        self._clients: dict[str, Client] = {}
        self._users: dict[str, User] = {}
        self._current: User | None = None
        self._deny_next = False
        self._fail_next: list[tuple[int, str]] = []
        self._codes: dict[str, AuthorizationCode] = {}
        self._nonces: set[tuple[str, str]] = set()
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._keys: list[RSAKey] = []
        self.rotate_signing_key()
        self.resource_server_secret = secrets.token_urlsafe(16)
        self._clients[RESOURCE_SERVER_ID] = Client(
            RESOURCE_SERVER_ID, self.resource_server_secret, [], frozenset(), resource_server=True)

        server = _Server(self)
        server.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: "at-" + generate_token(40),
            refresh_token_generator=lambda **_: "rt-" + generate_token(48),
            expires_generator=lambda client, grant_type: self.access_ttl,
        ))
        server.register_grant(_CodeGrant, [_S256Challenge(required=True), _OpenIDCode(self)])
        server.register_grant(_RefreshGrant)
        self._protector = _Protector()
        self._protector.register_token_validator(_BearerValidator(self))
        server.register_endpoint(_UserInfo(self, self._protector))
        server.register_endpoint(_Introspection(self))
        server.register_endpoint(_Revocation(self))
        self._server = server
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> OAuthProvider:
        self._httpd = make_server(self.host, self.port, self._wsgi, server_class=_ThreadingWSGIServer,
                                  handler_class=_Quiet)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=f"oauth-provider-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> OAuthProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def discovery_url(self) -> str:
        return self.base_url + "/.well-known/openid-configuration"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def userinfo_url(self) -> str:
        return self.base_url + "/userinfo"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/jwks"

    @property
    def revocation_url(self) -> str:
        return self.base_url + "/revoke"

    @property
    def introspection_url(self) -> str:
        """For Dovecot: with the resource server's credentials in the userinfo part."""
        return (f"http://{RESOURCE_SERVER_ID}:{self.resource_server_secret}@{self.host}:{self.port}"
                "/introspect")

    # ------------------------------------------------------------ test controls

    def register_client(self, client_id: str, client_secret: str | None, redirect_uris: Iterable[str],
                        *, scopes: Iterable[str] | None = None) -> Client:
        """A confidential client (``client_secret_basic``/``_post``), or a public one
        (PKCE only, ``token_endpoint_auth_method=none``) when ``client_secret`` is None."""
        with self._lock:
            client = Client(client_id, client_secret, list(redirect_uris),
                            frozenset(scopes if scopes is not None else self.scopes))
            self._clients[client_id] = client
            return client

    def login_as(self, email: str, *, name: str | None = None, email_verified: bool = True) -> User:
        """The browser's session: who consents at ``/authorize`` from now on."""
        with self._lock:
            user = self._user(email, name)
            user.email_verified = email_verified
            self._current = user
            return user

    def logout(self) -> None:
        with self._lock:
            self._current = None

    def deny_next(self) -> None:
        """The next ``/authorize`` redirects back with ``error=access_denied``."""
        with self._lock:
            self._deny_next = True

    def set_email_verified(self, verified: bool, email: str | None = None) -> None:
        """For ``email`` (default: the logged-in user); applies to tokens issued later
        and to ``/userinfo`` at once."""
        with self._lock:
            user = self._users[email.lower()] if email else self._current
            if user is None:
                raise ValueError("no user: call login_as() first or pass email")
            user.email_verified = verified

    def fail_next_token(self, status: int = 503, error: str = "temporarily_unavailable") -> None:
        """The next ``/token`` request answers ``status`` with ``{"error": error}``."""
        with self._lock:
            self._fail_next.append((status, error))

    def grant(self, email: str, *, client_id: str | None = None, scope: str = "openid email https://mail.google.com/",
              name: str | None = None) -> dict[str, Any]:
        """Tokens for ``email`` without the browser flow (as if the user had consented
        earlier): ``{"access_token", "refresh_token", "expires_in", "scope", "token_type"}``.
        ``client_id`` defaults to the only registered client (one is registered as
        ``bccd-test``/``client-s3cret`` if there is none)."""
        with self._lock:
            client = self._client_for_grant(client_id)
            user = self._user(email, name)
            token: dict[str, Any] = self._server.generate_token(
                "authorization_code", client, user=user, scope=client.get_allowed_scope(scope),
                include_refresh_token=True)
            self._store(token, client, user, secrets.token_hex(8))
            return token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is dead (introspection, userinfo)."""
        with self._lock:
            for token in self._by_access.values():
                token.expired = True

    def revoke(self, token: str) -> None:
        """Revoke the grant ``token`` (a refresh or an access token) belongs to: its
        refresh token(s) and access tokens — as when the user removes the app."""
        with self._lock:
            found = self._by_refresh.get(token) or self._by_access.get(token)
            if found is None:
                raise KeyError("unknown token")
            self._revoke_family(found.family)

    def rotate_signing_key(self) -> str:
        """A new RS256 signing key (kid returned); the JWKS keeps publishing the old ones."""
        with self._lock:
            kid = f"k{len(self._keys) + 1}-{secrets.token_hex(4)}"
            self._keys.append(RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}))
            return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def access_token_active(self, access_token: str) -> bool:
        with self._lock:
            token = self._by_access.get(access_token)
            return token is not None and not token.is_expired() and not token.is_revoked()

    def token_owner(self, access_token: str) -> str | None:
        """The email of a live access token's user (None if unknown, expired or revoked):
        what a resource server learns from introspection, without HTTP."""
        with self._lock:
            token = self._by_access.get(access_token)
            if token is None or token.is_expired() or token.is_revoked():
                return None
            return token.user.email

    def refresh_token_active(self, refresh_token: str) -> bool:
        with self._lock:
            token = self._by_refresh.get(refresh_token)
            return token is not None and not token.refresh_revoked

    @property
    def refreshes(self) -> int:
        return self.token_requests["refresh_token"]

    def metadata(self) -> dict[str, Any]:
        base = self.base_url
        return {
            "issuer": self.issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/jwks",
            "introspection_endpoint": base + "/introspect",
            "revocation_endpoint": base + "/revoke",
            "scopes_supported": list(self.scopes),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
                                 "email", "email_verified", "name"],
        }

    # ------------------------------------------------------------ internals

    def _user(self, email: str, name: str | None) -> User:
        user = self._users.get(email.lower())
        if user is None:
            user = User(email=email, name=name or email.split("@")[0].title())
            self._users[email.lower()] = user
        elif name:
            user.name = name
        return user

    def _client_for_grant(self, client_id: str | None) -> Client:
        if client_id is not None:
            return self._clients[client_id]
        clients = [c for c in self._clients.values() if not c.resource_server]
        if not clients:
            return self.register_client("bccd-test", "client-s3cret", ["http://127.0.0.1/callback"])
        if len(clients) > 1:
            raise ValueError("several clients registered: pass client_id")
        return clients[0]

    def _store(self, token: dict[str, Any], client: Client, user: User, family: str) -> Token:
        item = Token(client=client, user=user, scope=token.get("scope", ""),
                     access_token=token["access_token"], refresh_token=token.get("refresh_token"),
                     issued_at=time.time(), expires_in=int(token.get("expires_in", self.access_ttl)),
                     family=family)
        self._by_access[item.access_token] = item
        if item.refresh_token:
            self._by_refresh[item.refresh_token] = item
        return item

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        if request.authorization_code is not None:
            family = request.authorization_code.family
        elif request.refresh_token is not None:
            family = request.refresh_token.family
        else:
            family = secrets.token_hex(8)
        self._store(token, request.client, request.user, family)

    def _revoke_family(self, family: str) -> None:
        for token in self._by_access.values():
            if token.family == family:
                token.access_revoked = True
                token.refresh_revoked = True

    # ------------------------------------------------------------ WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        req = _HttpRequest.from_environ(environ)
        with self._lock:
            try:
                status, body, headers = self._route(req)
            except Exception as exc:  # a bug here must show in the test, not hang it
                status, body, headers = 500, f"{type(exc).__name__}: {exc}".encode(), [
                    ("Content-Type", "text/plain")]
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
        return iter([body])

    def _route(self, req: _HttpRequest) -> tuple[int, bytes, list[tuple[str, str]]]:
        json_h = [("Content-Type", "application/json")]
        if req.path == "/.well-known/openid-configuration" and req.method == "GET":
            return 200, json.dumps(self.metadata()).encode(), json_h
        if req.path == "/jwks" and req.method == "GET":
            return 200, json.dumps(self.jwks()).encode(), json_h
        if req.path == "/authorize" and req.method in ("GET", "POST"):
            return self._authorize(req)
        if req.path == "/token" and req.method == "POST":
            self.token_requests[(req.form.get("grant_type") or [""])[0]] += 1
            if self._fail_next:
                status, error = self._fail_next.pop(0)
                return status, json.dumps({"error": error}).encode(), json_h
            return self._server.create_token_response(req)  # type: ignore[no-any-return]
        if req.path == "/userinfo" and req.method in ("GET", "POST"):
            self.userinfo_requests += 1
            self._protector.current = self._server.create_oauth2_request(req)
            try:
                return self._server.create_endpoint_response("userinfo", req)  # type: ignore[no-any-return]
            finally:
                self._protector.current = None
        if req.path == "/introspect" and req.method == "POST":
            self.introspections += 1
            return self._server.create_endpoint_response("introspection", req)  # type: ignore[no-any-return]
        if req.path == "/revoke" and req.method == "POST":
            return self._server.create_endpoint_response("revocation", req)  # type: ignore[no-any-return]
        return 404, b'{"error": "not_found"}', json_h

    def _authorize(self, req: _HttpRequest) -> tuple[int, bytes, list[tuple[str, str]]]:
        self.authorize_requests += 1
        user = self._current
        try:
            grant = self._server.get_consent_grant(req, end_user=user)
        except OAuth2Error as error:
            # no valid client/redirect_uri: an error page, never a redirect; otherwise
            # redirect_uri is set on the error and it goes back to the client
            return self._server.handle_error_response(req, error)  # type: ignore[no-any-return]
        if self._deny_next:
            self._deny_next = False
            return self._server.create_authorization_response(  # type: ignore[no-any-return]
                grant.request, grant_user=None, grant=grant)
        if user is None:
            page = b"<html><body><h1>Sign in</h1><p>No test user: call provider.login_as().</p></body></html>"
            return 200, page, [("Content-Type", "text/html; charset=utf-8")]
        return self._server.create_authorization_response(  # type: ignore[no-any-return]
            grant.request, grant_user=user, grant=grant)


_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


# ---------------------------------------------------------------- client-side helpers for tests


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
