"""TLS contexts, OAuth 2.0 refresh, and failure reasons."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from imapclient import exceptions as imap_exc

from bccd.imap.client import (
    AuthFailure,
    ConnectFailure,
    ProtocolFailure,
    TlsFailure,
    _classify,
    _short,
    make_ssl_context,
    needs_refresh,
    refresh_oauth,
)
from bccd.mailboxes.accounts import OAuth2Auth
from tests.support.oauth import OAuthServer

pytestmark = pytest.mark.spec("7")


@pytest.fixture
def ca_pem(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_ssl_context_verifies_and_honours_ssl_cert_file(ca_pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_pem)
    ctx = make_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert any("trustme" in str(c["subject"]) for c in ctx.get_ca_certs())


def test_ssl_context_with_account_ca_file_trusts_only_it(
    ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    ctx = make_ssl_context(ca_pem)
    assert len(ctx.get_ca_certs()) == 1


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer(ttl=600) as server:
        yield server


def _auth(server: OAuthServer, refresh_token: str) -> OAuth2Auth:
    return OAuth2Auth(
        token_url=server.token_url,
        client_id=server.client_id,
        client_secret=server.client_secret,
        refresh_token=refresh_token,
    )


def test_refresh_oauth_issues_token_with_expiry(oauth: OAuthServer) -> None:
    auth = _auth(oauth, oauth.grant("u"))
    assert needs_refresh(auth)
    new = refresh_oauth(auth, now=1000.0)
    assert new.access_token.startswith("at-") and new.expires_at == 1600.0
    assert new.refresh_token == auth.refresh_token
    assert needs_refresh(new, now=1600.0 - 299)  # inside the 5-minute margin
    assert not needs_refresh(new, now=1000.0)


def test_refresh_refused_and_unreachable(oauth: OAuthServer) -> None:
    with pytest.raises(AuthFailure, match=r"refused \(400 invalid_grant\)"):
        refresh_oauth(_auth(oauth, "rt-unknown"))
    bad_client = OAuth2Auth(
        token_url=oauth.token_url, client_id="x", client_secret="y", refresh_token=oauth.grant("u")
    )
    with pytest.raises(AuthFailure, match="401 invalid_client"):
        refresh_oauth(bad_client)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = OAuth2Auth(token_url=f"http://127.0.0.1:{port}/token", client_id="c", refresh_token="r")
    with pytest.raises(ConnectFailure, match="unreachable"):
        refresh_oauth(down)


def test_secrets_not_in_repr() -> None:
    a = OAuth2Auth(
        token_url="https://t",
        client_id="cid",
        client_secret="csecret",
        refresh_token="rtoken",
        access_token="atoken",
        expires_at=time.time(),
    )
    r = repr(a)
    assert "csecret" not in r and "rtoken" not in r and "atoken" not in r and "cid" in r


def test_classify_reasons() -> None:
    w = "imap.example:993"
    assert isinstance(_classify(ConnectionRefusedError(), w), ConnectFailure)
    assert isinstance(_classify(socket.gaierror(), w), ConnectFailure)
    assert isinstance(_classify(TimeoutError(), w), ConnectFailure)
    assert isinstance(_classify(ssl.SSLError(1, "bad"), w), TlsFailure)
    assert isinstance(_classify(imap_exc.IMAPClientAbortError("EOF"), w), ConnectFailure)
    p = _classify(imap_exc.IMAPClientError("b'[NONEXISTENT] Unknown Mailbox'"), w)
    assert isinstance(p, ProtocolFailure) and p.reason.endswith(": [NONEXISTENT] Unknown Mailbox")
    assert _classify(ValueError("x"), w).reason == f"unexpected error with {w}: ValueError"
    assert _short("x" * 300, 10) == "x" * 9 + "…"
    assert _short(b"a\r\n  b") == "a b"
