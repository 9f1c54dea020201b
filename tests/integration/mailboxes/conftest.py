"""Fixtures for connecting mailboxes: the real OAuth provider (``tests/support/oauth_provider``),
a Dovecot that takes its tokens over XOAUTH2/OAUTHBEARER, a capture SMTP server for
bccd's own mail, and ``bccd serve`` configured with ``[oauth.google]`` pointed at the
loopback provider (so the Gmail preset's "Sign in with Google" is the real flow) and
``[oidc]`` at the same provider. The serve process trusts the test Dovecot's CA through
``SSL_CERT_FILE``, as an operator's system trust store would."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("authlib", reason="the OAuth provider is built on Authlib")

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.oauth_provider import OAuthProvider
from tests.support.server import BccdServer

CLIENT_ID, CLIENT_SECRET = "bccd", "bccd-s3cret"
_n = itertools.count(1)


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider() as idp:
        yield idp


@pytest.fixture(scope="module")
def dovecot(provider: OAuthProvider) -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    with Dovecot(oauth_introspection_url=provider.introspection_url) as server:
        yield server


@pytest.fixture
def outbox() -> Iterator[CaptureSmtp]:
    with CaptureSmtp() as cap:
        yield cap


@pytest.fixture
def site(tmp_path: Path, provider: OAuthProvider, dovecot: Dovecot, outbox: CaptureSmtp,
         monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[BccdServer]:
    """A started ``bccd serve`` (SQLite; ``@pytest.mark.parametrize("engine", …)`` for
    PostgreSQL) with a company, an admin and a user."""
    engine = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    monkeypatch.setenv("SSL_CERT_FILE", dovecot.ca_file)
    d = tmp_path / f"site{next(_n)}"
    d.mkdir()
    srv = BccdServer(d, {
        "imap": {"poll_interval": 1, "initial_days": 0, "batch_size": 2},
        "outbound": {"host": "127.0.0.1", "port": outbox.port},
        "oauth.google": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                         "authorize_url": provider.authorize_url, "token_url": provider.token_url,
                         "userinfo_url": provider.userinfo_url,
                         "scopes": ["openid", "email", "https://mail.google.com/"],
                         "imap_host": "127.0.0.1", "imap_port": dovecot.ssl_port},
        "oauth.corp": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "name": "Corp",
                       "authorize_url": provider.authorize_url, "token_url": provider.token_url,
                       "userinfo_url": provider.userinfo_url, "scopes": ["openid", "email"],
                       "imap_host": "127.0.0.1", "imap_port": closed_port()},
        "oidc": {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "name": "Acme SSO"},
    }, database_url=url)
    provider.register_client(CLIENT_ID, CLIENT_SECRET, [f"{srv.http_url}/oauth/callback"])
    if url:
        srv.cli("db", "upgrade", json_out=False)
    srv.start()
    try:
        srv.setup_user("boss@acme.test", name="Boss", admin=True)
        srv.users = {"alice": srv.setup_user("alice@acme.test", name="Alice"),  # type: ignore[attr-defined]
                     "boss": {"email": "boss@acme.test"}}
        yield srv
    finally:
        srv.stop()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(srv: BccdServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{srv.http_url}/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def message(i: int, sender: str = "carol@customer.test", to: str = "alice@acme.test") -> bytes:
    return (f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: Hello {i}\r\n"
            f"Message-ID: <m{i}-{os.getpid()}-{time.monotonic_ns()}@customer.test>\r\n"
            "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nBody {i}\r\n").encode()
