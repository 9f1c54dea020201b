"""The Mail page over plain HTTP (httpx): sign-in and its cookie, CSRF and Origin checks,
security headers, the one visibility rule, settings forms, and sessions ending when the
user is disabled."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pytest

from tests.support.web_world import World

pytestmark = [pytest.mark.xdist_group("web_pages"),  # one world per module
              pytest.mark.spec("9")]


def _nonce(page: str) -> str:
    m = re.search(r'name="nonce" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def sign_in(base: str, token: str) -> tuple[httpx.Client, httpx.Response]:
    http = httpx.Client(base_url=base, timeout=20)
    login = http.get("/mail/login")
    r = http.post("/mail/login", data={"nonce": _nonce(login.text), "token": token})
    return http, r


def test_sign_in_sets_a_hardened_session_cookie(world: World) -> None:
    base = world.srv.http_url
    with httpx.Client(base_url=base, timeout=20) as anon:
        r = anon.get("/mail")
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
        assert anon.get("/").headers["location"] == "/mail"
    http, r = sign_in(base, "bccd_wrong")
    with closing(http):
        assert r.status_code == 401 and "not valid" in r.text
        assert "bccd_session" not in r.headers.get("set-cookie", "")
    http, r = sign_in(base, world.tokens["alice"])
    with closing(http):
        assert r.status_code == 303 and r.headers["location"] == "/mail"
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("bccd_session="))
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs
        assert "secure" not in attrs  # public_url is http here
        page = http.get("/mail")
        assert page.status_code == 200 and "Private offer" in page.text and "Shared plan" in page.text
        assert 'class="badge deal"' in page.text and "Big deal" in page.text
        h = page.headers
        assert h["cache-control"] == "no-store" and h["x-frame-options"] == "DENY"
        assert h["content-security-policy"].startswith("default-src 'none'")
        # scripts from bccd itself only (the compose editor): no inline script, no eval
        assert "script-src 'self';" in h["content-security-policy"]
        assert "unsafe-inline" not in h["content-security-policy"].split("script-src")[1].split(";")[0]
        assert "unsafe-eval" not in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        found = http.get("/mail", params={"q": "shared plan"})
        assert "Shared plan" in found.text and "Private offer" not in found.text
        by_deal = http.get("/mail", params={"deal": world.ids["secret"]})
        assert "Secret terms" in by_deal.text and "Shared plan" not in by_deal.text
        css = http.get("/mail/static/mail.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        # sign out: the cookie is cleared
        r = http.post("/mail/logout", data={"csrf": _csrf(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
        assert 'bccd_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]


def test_cookie_is_secure_when_the_public_url_is_https(make_server) -> None:
    srv = make_server({"http": {"public_url": "https://mail.example.test"}})
    user = srv.setup_user()
    with httpx.Client(base_url=srv.http_url, timeout=20) as http:
        login = http.get("/mail/login")
        nonce_cookie = login.headers["set-cookie"]
        assert "secure" in {a.strip().lower() for a in nonce_cookie.split(";")}
        nonce = _nonce(login.text)
        # a Secure cookie is not sent back over plain http: hand it over as a proxy would
        r = http.post("/mail/login", data={"nonce": nonce, "token": user["api_token"]},
                      headers={"Cookie": f"bccd_login={nonce}"})
        assert r.status_code == 303, r.text
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("bccd_session="))
        assert "secure" in {a.strip().lower() for a in cookie.split(";")}


def test_forms_need_the_session_csrf_token_and_a_same_origin(world: World) -> None:
    tid = world.threads["private"]
    http, _ = sign_in(world.srv.http_url, world.tokens["alice"])
    with closing(http):
        page = http.get(f"/mail/threads/{tid}")
        assert page.status_code == 200
        csrf = _csrf(page.text)
        ref = f"deal:{world.ids['second']}"
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": ref})
        assert r.status_code == 403 and "nothing was changed" in r.text
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": ref, "csrf": csrf + "x"})
        assert r.status_code == 403
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": ref, "csrf": csrf},
                      headers={"Origin": "https://evil.test"})
        assert r.status_code == 403
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": ref, "csrf": csrf},
                      headers={"Origin": world.srv.http_url})
        assert r.status_code == 303 and r.headers["location"] == f"/mail/threads/{tid}?done=linked"
        page = http.get(r.headers["location"])
        assert "Linked." in page.text and "Second deal" in page.text
        # a CSRF token of another session does not work
        other, _ = sign_in(world.srv.http_url, world.tokens["alice"])
        with closing(other):
            r = other.post(f"/mail/threads/{tid}/unlink", data={"ref": ref, "csrf": csrf + "A"})
            assert r.status_code == 403
        r = http.post(f"/mail/threads/{tid}/unlink", data={"ref": ref, "csrf": csrf})
        assert r.status_code == 303
        # an error is shown on the page, with a 4xx
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": "deal:999999", "csrf": csrf})
        assert r.status_code == 404 and "no deal 999999" in r.text
        r = http.post(f"/mail/threads/{tid}/link", data={"person_email": "dana@client.test",
                                                          "csrf": csrf})
        assert r.status_code == 303
        assert "Dana Client" in http.get(f"/mail/threads/{tid}").text
        r = http.post(f"/mail/threads/{tid}/link", data={"ref": f"deal:{world.ids['big']}",
                                                          "csrf": csrf})
        assert r.status_code == 303


def test_pages_follow_the_visibility_rule(world: World) -> None:
    http, _ = sign_in(world.srv.http_url, world.tokens["bob"])
    with closing(http):
        page = http.get("/mail")
        assert "Shared plan" in page.text
        assert "Private offer" not in page.text and "Secret terms" not in page.text
        for key in ("private", "secret"):
            r = http.get(f"/mail/threads/{world.threads[key]}")
            gone = http.get("/mail/threads/999999999")
            assert r.status_code == gone.status_code == 404
            assert r.text == gone.text
        shared = http.get(f"/mail/threads/{world.threads['shared']}")
        assert shared.status_code == 200 and "Make private" not in shared.text  # not the owner
        with world.client("alice") as alice:
            [m] = alice.get(f"/threads/{world.threads['private']}").json()["messages"]
        assert http.get(f"/mail/attachments/{m['attachments'][0]['id']}").status_code == 404
        assert http.get(f"/mail/messages/{m['id']}/raw").status_code == 404
    http, _ = sign_in(world.srv.http_url, world.tokens["alice"])
    with closing(http):
        r = http.get(f"/mail/attachments/{m['attachments'][0]['id']}")
        assert r.status_code == 200 and r.content == b"%PDF-1.4 offer"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert http.get(f"/mail/messages/{m['id']}/raw").content == world.raw["private"]


def test_settings_forms(world: World) -> None:
    http, _ = sign_in(world.srv.http_url, world.tokens["bob"])
    with closing(http):
        page = http.get("/mail/settings")
        assert world.users["bob"]["bcc_address"] in page.text
        csrf = _csrf(page.text)
        r = http.post("/mail/settings", data={"csrf": csrf, "sharing_default": "shared",
                                              "linking_mode": "manual", "email_links": "default-client"})
        assert r.status_code == 303 and r.headers["location"] == "/mail/settings?done=saved"
        me = world.srv.cli("user", "show", "bob@acme.test")
        assert (me["sharing_default"], me["linking_mode"]) == ("shared", "manual")
        r = http.post("/mail/settings/blocked/add", data={"csrf": csrf, "value": "@Spam.test"})
        assert r.status_code == 303
        assert "@spam.test" in http.get("/mail/settings").text
        r = http.post("/mail/settings/blocked/add", data={"csrf": csrf, "value": "not a pattern"})
        assert r.status_code == 422 and "pattern must be" in r.text
        r = http.post("/mail/settings/blocked/remove", data={"csrf": csrf, "value": "@spam.test"})
        assert r.status_code == 303
        r = http.post("/mail/settings/alternates/add", data={"csrf": csrf, "value": "bob@home.test"})
        assert r.status_code == 303 and r.headers["location"].endswith("done=alt_added")
        page = http.get(r.headers["location"])
        assert "bob@home.test" in page.text and "pending" in page.text
        r = http.post("/mail/settings/alternates/resend", data={"csrf": csrf, "value": "bob@home.test"})
        assert r.status_code == 429 and "try again" in r.text
        r = http.post("/mail/settings/alternates/remove", data={"csrf": csrf, "value": "bob@home.test"})
        assert r.status_code == 303
        http.post("/mail/settings", data={"csrf": csrf, "sharing_default": "private",
                                          "linking_mode": "auto", "email_links": "app"})


def test_a_disabled_users_session_ends(world: World) -> None:
    frank = world.srv.setup_user("frank@acme.test", company="acme", name="Frank")
    http, r = sign_in(world.srv.http_url, frank["api_token"])
    with closing(http):
        assert http.get("/mail").status_code == 200
        world.srv.cli("user", "disable", "frank@acme.test")
        r = http.get("/mail")
        assert r.status_code == 303 and r.headers["location"] == "/mail/login"
        http2, r = sign_in(world.srv.http_url, frank["api_token"])
        with closing(http2):
            assert r.status_code == 401
