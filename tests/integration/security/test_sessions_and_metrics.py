"""Issue #17, item 9: signing out ends the session on the server; ``/metrics`` answers
only ``http.metrics_allow`` or ``http.metrics_token`` and does not query the database per
scrape (SPEC §9, §10).

Sessions used to be signed cookies with no server state: a cookie copied before sign-out
kept working for its 12 hours. ``/metrics`` answered every client of the HTTP port and ran
its database queries on each scrape."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import closing

import httpx
import pytest

from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("10")

TOKEN = "metrics-secret-0123456789"


def _nonce(page: str) -> str:
    m = re.search(r'name="nonce" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def _sign_in(base: str, token: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=base, timeout=20)
    r = http.post("/mail/login", data={"nonce": _nonce(http.get("/mail/login").text), "token": token})
    assert r.status_code == 303 and r.headers["location"] == "/mail", r.text
    return http, http.cookies["bccd_session"]


def _stolen(base: str, cookie: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=20)
    http.cookies.set("bccd_session", cookie)
    return http


def _server(make_server: Callable[..., BccdServer], db_url: str,
            overrides: dict[str, dict[str, object]] | None = None) -> BccdServer:
    """A server on SQLite (its embedded database) or on the PostgreSQL ``db_url``."""
    if db_url.startswith("sqlite"):
        return make_server(overrides)
    srv = make_server(overrides, database_url=db_url, start=False)
    srv.cli("db", "upgrade")
    srv.start()
    return srv


def test_a_session_cookie_replayed_after_sign_out_is_signed_out(
        make_server: Callable[..., BccdServer], db_url: str) -> None:
    srv = _server(make_server, db_url)
    token = srv.setup_user("alice@acme.test")["api_token"]
    http, cookie = _sign_in(srv.http_url, token)
    with closing(http):
        page = http.get("/mail/settings")
        assert page.status_code == 200
        csrf = _csrf(page.text)
        # the thief copies the cookie (and a form's CSRF value) while the user is signed in
        with closing(_stolen(srv.http_url, cookie)) as thief:
            assert thief.get("/mail").status_code == 200
        r = http.post("/mail/logout", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
    with closing(_stolen(srv.http_url, cookie)) as thief:
        r = thief.get("/mail")
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
        r = thief.post("/mail/settings", data={"csrf": csrf, "sharing_default": "shared"})
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
        assert thief.get("/mail/settings").status_code == 303
    assert srv.cli("user", "show", "alice@acme.test")["sharing_default"] == "private"


def test_signing_out_ends_that_session_only(make_server: Callable[..., BccdServer],
                                            db_url: str) -> None:
    srv = _server(make_server, db_url)
    token = srv.setup_user("alice@acme.test")["api_token"]
    laptop, _ = _sign_in(srv.http_url, token)
    phone, _ = _sign_in(srv.http_url, token)
    with closing(laptop), closing(phone):
        csrf = _csrf(laptop.get("/mail/settings").text)
        assert laptop.post("/mail/logout", data={"csrf": csrf}).status_code == 303
        assert laptop.get("/mail").status_code == 303
        assert phone.get("/mail").status_code == 200


@pytest.mark.pg
def test_sign_out_on_one_instance_ends_the_session_on_every_instance(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    a = _server(make_server, pg_url, {"security": {"secret_key": "k" * 43}})
    b = _server(make_server, pg_url, {"security": {"secret_key": "k" * 43}})
    token = a.setup_user("alice@acme.test")["api_token"]
    http, cookie = _sign_in(a.http_url, token)
    with closing(http), closing(_stolen(b.http_url, cookie)) as on_b:
        assert on_b.get("/mail").status_code == 200  # one session, valid on both
        csrf = _csrf(http.get("/mail/settings").text)
        assert http.post("/mail/logout", data={"csrf": csrf}).status_code == 303
        r = on_b.get("/mail")
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"


# ------------------------------------------------------------------ /metrics
def test_metrics_refuses_a_client_outside_metrics_allow_even_with_x_forwarded_for(
        make_server: Callable[..., BccdServer]) -> None:
    # bccd listens on 127.0.0.1: a range without it stands for a client that is not allowed
    srv = make_server({"http": {"metrics_allow": ["10.0.0.0/8"], "metrics_token": TOKEN}})
    with httpx.Client(base_url=srv.http_url, timeout=20) as http:
        r = http.get("/metrics")
        assert r.status_code == 403
        assert "bccd_" not in r.text
        for forged in ({"X-Forwarded-For": "10.1.2.3"}, {"X-Real-IP": "10.1.2.3"},
                       {"Forwarded": "for=10.1.2.3"}):
            assert http.get("/metrics", headers=forged).status_code == 403, forged
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
        r = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and "bccd_messages_accepted_total" in r.text


def test_metrics_by_default_answers_loopback_but_not_a_request_through_a_proxy(
        server: BccdServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=20) as http:
        assert http.get("/metrics").status_code == 200
        # a reverse proxy on this host connects from loopback on behalf of anyone: a
        # forwarded request is judged by the token alone (none is configured here)
        assert http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_metrics_scrapes_do_not_query_the_database_each_time(server: BccdServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=20) as http:
        for _ in range(60):
            r = http.get("/metrics")
            assert r.status_code == 200
    reads = re.search(r"^bccd_metrics_db_reads_total (\S+)$", r.text, re.MULTILINE)
    assert reads is not None, r.text[:2000]
    assert float(reads.group(1)) <= 2  # 60 scrapes in a few seconds: one read of the database
