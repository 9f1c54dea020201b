"""The OAuth 2.0 / OpenID Connect provider (``tests/support/oauth_provider.py``) against
real clients: Authlib's ``OAuth2Session`` (requests) for the authorization-code flow with
PKCE, httpx for the browser's redirects (followed by hand), joserfc and Authlib's
``CodeIDToken`` for the ID token against the published JWKS, and Dovecot's ``oauth2``
passdb for its access tokens.

(Not Authlib's httpx ``OAuth2Client``: Authlib 1.9 warns on importing it unless the
``httpx2`` package is installed, and warnings are errors here.)"""

from __future__ import annotations

import imaplib
import itertools
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import imapclient
import pytest
from authlib.integrations.requests_client import OAuth2Session as OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.integration.peers.conftest import REDIRECT_URI
from tests.support.dovecot import Dovecot
from tests.support.oauth_provider import OAuthProvider

SCOPE = "openid email profile https://mail.google.com/"
_n = itertools.count(1)


@pytest.fixture
def email(provider: OAuthProvider) -> str:
    address = f"user{next(_n)}@mail.test"
    provider.login_as(address, name="Test User")
    return address


@pytest.fixture
def client(provider: OAuthProvider) -> Iterator[OAuth2Client]:
    with OAuth2Client("bccd", "bccd-s3cret", scope=SCOPE, redirect_uri=REDIRECT_URI,
                      code_challenge_method="S256") as c:
        yield c


def authorize(provider: OAuthProvider, client: OAuth2Client, **params: Any) -> tuple[httpx.Response, str, str]:
    """The browser leg: GET /authorize, return (response, state, code_verifier)."""
    verifier = params.pop("code_verifier", "v" * 64)
    url, state = client.create_authorization_url(provider.authorize_url, code_verifier=verifier, **params)
    with httpx.Client() as browser:
        resp = browser.get(url, follow_redirects=False)
    return resp, state, verifier


def redirect_params(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def code_flow(provider: OAuthProvider, client: OAuth2Client, **params: Any) -> dict[str, Any]:
    resp, _state, verifier = authorize(provider, client, **params)
    return dict(client.fetch_token(provider.token_url, authorization_response=resp.headers["location"],
                                   code_verifier=verifier))


def test_discovery_names_the_endpoints_and_the_issuer_is_the_base_url(provider: OAuthProvider) -> None:
    doc = httpx.get(provider.discovery_url).json()
    OpenIDProviderMetadata(doc).validate()
    assert doc["issuer"] == provider.base_url == provider.issuer
    assert doc["code_challenge_methods_supported"] == ["S256"]
    keys = httpx.get(doc["jwks_uri"]).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k for k in keys)


def test_the_code_flow_with_pkce_echoes_state_and_issues_tokens(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    resp, state, verifier = authorize(provider, client, nonce="n-1")
    params = redirect_params(resp)
    assert params["state"] == state and params["code"]
    token = client.fetch_token(provider.token_url, authorization_response=resp.headers["location"],
                               code_verifier=verifier)
    assert token["token_type"] == "Bearer" and token["access_token"] and token["refresh_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert token["expires_in"] == provider.access_ttl
    assert provider.access_token_active(token["access_token"])


def test_a_replayed_authorization_code_is_refused_and_revokes_its_tokens(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    resp, _state, verifier = authorize(provider, client)
    code = redirect_params(resp)["code"]
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}
    first = httpx.post(provider.token_url, data=body, auth=("bccd", "bccd-s3cret"))
    assert first.status_code == 200
    again = httpx.post(provider.token_url, data=body, auth=("bccd", "bccd-s3cret"))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not provider.access_token_active(first.json()["access_token"])
    assert not provider.refresh_token_active(first.json()["refresh_token"])


def test_a_wrong_code_verifier_is_refused(provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    resp, _state, _verifier = authorize(provider, client)
    code = redirect_params(resp)["code"]
    r = httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": "w" * 64})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_an_authorization_request_without_s256_pkce_goes_back_with_invalid_request(
        provider: OAuthProvider, email: str) -> None:
    base = {"response_type": "code", "client_id": "bccd", "redirect_uri": REDIRECT_URI, "scope": SCOPE,
            "state": "st"}
    with httpx.Client() as browser:
        missing = browser.get(provider.authorize_url, params=base)
        plain = browser.get(provider.authorize_url, params={
            **base, "code_challenge": "p" * 43, "code_challenge_method": "plain"})
    for resp in (missing, plain):
        params = redirect_params(resp)
        assert params["error"] == "invalid_request" and params["state"] == "st"


def test_an_unregistered_redirect_uri_is_an_error_page_not_a_redirect(
        provider: OAuthProvider, email: str) -> None:
    with httpx.Client() as browser:
        resp = browser.get(provider.authorize_url, params={
            "response_type": "code", "client_id": "bccd", "redirect_uri": "http://127.0.0.1:9/evil",
            "scope": SCOPE, "state": "st", "code_challenge": create_s256_code_challenge("v" * 64),
            "code_challenge_method": "S256"})
    assert resp.status_code == 400 and "location" not in resp.headers
    assert resp.json()["error"] == "invalid_request"


def test_a_denied_consent_goes_back_with_access_denied_and_the_state(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    provider.deny_next()
    resp, state, _verifier = authorize(provider, client)
    params = redirect_params(resp)
    assert params["error"] == "access_denied" and params["state"] == state and "code" not in params
    resp, _state, _verifier = authorize(provider, client)
    assert "code" in redirect_params(resp)


def test_nobody_signed_in_gets_the_sign_in_page(provider: OAuthProvider, client: OAuth2Client) -> None:
    provider.logout()
    resp, _state, _verifier = authorize(provider, client)
    assert resp.status_code == 200 and "Sign in" in resp.text


def verify_id_token(provider: OAuthProvider, id_token: str, nonce: str | None) -> CodeIDToken:
    keys = KeySet.import_key_set(httpx.get(provider.jwks_url).json())
    decoded = jwt.decode(id_token, keys, algorithms=["RS256"])
    claims = CodeIDToken(decoded.claims, decoded.header, options={
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": "bccd"},
        "nonce": {"essential": nonce is not None, **({"value": nonce} if nonce else {})},
    }, params={"nonce": nonce})
    claims.validate()
    return claims


def test_the_id_token_verifies_against_the_jwks_with_issuer_audience_and_nonce(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    token = code_flow(provider, client, nonce="nonce-42")
    claims = verify_id_token(provider, token["id_token"], "nonce-42")
    assert claims.header["alg"] == "RS256" and claims.header["kid"]
    assert claims["email"] == email and claims["email_verified"] is True
    assert claims["name"] == "Test User" and claims["sub"]
    assert claims["nonce"] == "nonce-42"
    # a different audience or nonce does not verify
    with pytest.raises(Exception, match="aud"):
        CodeIDToken(claims, claims.header, options={"aud": {"essential": True, "value": "other"}}).validate()
    with pytest.raises(Exception, match="nonce"):
        CodeIDToken(claims, claims.header, options={"nonce": {"essential": True, "value": "other"}}).validate()


def test_set_email_verified_false_shows_in_the_id_token(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    provider.set_email_verified(False)
    claims = verify_id_token(provider, code_flow(provider, client)["id_token"], None)
    assert claims["email"] == email and claims["email_verified"] is False


def test_an_id_token_signed_before_a_key_rotation_still_verifies(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    old = code_flow(provider, client)["id_token"]
    provider.rotate_signing_key()
    new = code_flow(provider, client)["id_token"]
    assert jwt.decode(old, KeySet.import_key_set(provider.jwks())).header["kid"] != \
        jwt.decode(new, KeySet.import_key_set(provider.jwks())).header["kid"]
    verify_id_token(provider, old, None)
    verify_id_token(provider, new, None)


def test_refresh_rotates_and_the_old_refresh_token_is_then_refused(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    token = code_flow(provider, client)
    before = provider.refreshes
    fresh = client.refresh_token(provider.token_url, refresh_token=token["refresh_token"])
    assert provider.refreshes == before + 1
    assert fresh["access_token"] != token["access_token"]
    assert fresh["refresh_token"] != token["refresh_token"]
    r = httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"),
                   data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    again = client.refresh_token(provider.token_url, refresh_token=fresh["refresh_token"])
    assert again["access_token"]


def test_without_rotation_the_refresh_token_stays(provider: OAuthProvider, email: str) -> None:
    provider.rotate_refresh_tokens = False
    try:
        tokens = provider.grant(email, client_id="bccd")
        for _ in range(2):
            r = httpx.post(provider.token_url, data={
                "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                "client_id": "bccd", "client_secret": "bccd-s3cret"})  # client_secret_post
            assert r.status_code == 200 and "refresh_token" not in r.json()
    finally:
        provider.rotate_refresh_tokens = True


def test_a_wrong_client_secret_is_invalid_client(provider: OAuthProvider, email: str) -> None:
    tokens = provider.grant(email, client_id="bccd")
    r = httpx.post(provider.token_url, auth=("bccd", "nope"),
                   data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_a_revoked_grant_refuses_its_refresh_token(provider: OAuthProvider, email: str) -> None:
    tokens = provider.grant(email, client_id="bccd")
    provider.revoke(tokens["refresh_token"])
    r = httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"),
                   data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert not provider.access_token_active(tokens["access_token"])


def test_a_scripted_token_endpoint_outage(provider: OAuthProvider, email: str) -> None:
    tokens = provider.grant(email, client_id="bccd")
    provider.fail_next_token(503, "temporarily_unavailable")
    body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    r = httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"), data=body)
    assert r.status_code == 503 and r.json() == {"error": "temporarily_unavailable"}
    assert httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"), data=body).status_code == 200


def test_userinfo_answers_for_a_bearer_token_until_it_expires(
        provider: OAuthProvider, client: OAuth2Client, email: str) -> None:
    token = code_flow(provider, client)
    r = client.get(provider.userinfo_url)  # the session sends its token as Bearer
    assert r.status_code == 200
    info = r.json()
    assert info["email"] == email and info["email_verified"] is True and info["name"] == "Test User"
    assert info["sub"] == verify_id_token(provider, token["id_token"], None)["sub"]
    provider.expire_access_tokens()
    r = httpx.get(provider.userinfo_url, headers={"Authorization": f"Bearer {token['access_token']}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_introspection_answers_like_the_old_token_server(provider: OAuthProvider, email: str) -> None:
    tokens = provider.grant(email)
    url = urllib.parse.urlsplit(provider.introspection_url)
    plain_url = url._replace(netloc=f"{url.hostname}:{url.port}").geturl()
    auth = (url.username or "", url.password or "")
    r = httpx.post(plain_url, data={"token": tokens["access_token"]}, auth=auth)
    assert r.json()["active"] is True and r.json()["username"] == email
    assert httpx.post(plain_url, data={"token": "at-unknown"}, auth=auth).json() == {"active": False}
    assert httpx.post(plain_url, data={"token": tokens["access_token"]}).status_code == 401


# ---------------------------------------------------------------- Dovecot takes its tokens


def _oauthbearer(user: str, token: str) -> bytes:
    return f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_dovecot_imap_accepts_a_provider_access_token_and_refuses_it_once_expired(
        mechanism: str, provider: OAuthProvider, dovecot: Dovecot) -> None:
    user = dovecot.add_user(f"imap-{mechanism.lower()}@mail.test", "unused-password")
    dovecot.append(user, b"Subject: hello\r\n\r\nbody\r\n")
    tokens = provider.grant(user, client_id="bccd")

    def login(token: str) -> None:
        with imapclient.IMAPClient(dovecot.host, port=dovecot.ssl_port, ssl=True,
                                   ssl_context=dovecot.ssl_context(), timeout=10) as c:
            if mechanism == "XOAUTH2":
                c.oauth2_login(user, token)
            else:
                c._imap.authenticate("OAUTHBEARER", lambda _challenge: _oauthbearer(user, token))
            assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1

    before = provider.introspections
    login(tokens["access_token"])
    assert provider.introspections == before + 1
    provider.expire_access_tokens()
    with pytest.raises(imaplib.IMAP4.error):
        login(tokens["access_token"])
    fresh = httpx.post(provider.token_url, auth=("bccd", "bccd-s3cret"), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    login(fresh["access_token"])

