"""Attacks on alternate-address confirmation across companies (issue #17 item 4; SPEC §6:
resending is rate-limited per user and address, with a cap per user per day, and no
answer reveals anything about users of another company).

- Blocking: the resend limit was keyed on the address across every tenant, so a user of
  one company who adds an address first stops a user of another company from ever getting
  a confirmation mail for it (re-adding it every few minutes) — and learns from the 429
  that someone asked for that address.
- Probing: adding another company's user's login answered ``409 … login address of
  another user``, so any user could test which addresses are users of other companies.
- Mailing many addresses: nothing capped how many confirmation mails one user makes bccd
  send (add, remove, add again …).

Everything goes through the real API and Mail page, with a capture SMTP server as the
outbound relay, on SQLite and PostgreSQL (the limits are kept in the database)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.security.two_companies import Companies, csrf_of
from tests.support.capture_smtp import CaptureSmtp
from tests.support.linking_world import server_on
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("6")

CAP = 4


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureSmtp]:
    with CaptureSmtp() as cap:
        yield cap


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        capture: CaptureSmtp) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    overrides: dict[str, dict[str, Any]] = {
        "outbound": {"port": capture.port},
        "confirm": {"resend_interval": "1h", "daily_cap": CAP},
    }
    with server_on(request.param, tmp_path_factory.mktemp(request.param), admin,
                   overrides) as server:
        yield server


@pytest.fixture
def c(srv: BccdServer, capture: CaptureSmtp) -> Companies:
    capture.clear()
    return Companies(srv, "alt")


def _mails_to(capture: CaptureSmtp, address: str) -> list[str]:
    """The text of every confirmation mail sent to ``address`` so far."""
    return [m.part("text/plain") for m in capture.messages if m.rcpt_tos == [address]]


def _wait_mails_to(capture: CaptureSmtp, address: str, n: int) -> list[str]:
    deadline = time.monotonic() + 20
    while len(found := _mails_to(capture, address)) < n:
        assert time.monotonic() < deadline, f"{len(found)} mails to {address}, expected {n}"
        time.sleep(0.1)
    return found


def _shape(r: httpx.Response, *addresses: str) -> tuple[int, str]:
    """Status and body with the address asked for and the times masked: what an answer
    tells beyond what the caller typed."""
    body = r.text
    for a in addresses:
        body = body.replace(a, "ADDRESS")
    return r.status_code, re.sub(r"\d{4}-\d\d-\d\dT[\d:.+]+", "TIME", body)


def test_a_user_of_another_company_cannot_block_a_confirmation(c: Companies,
                                                               capture: CaptureSmtp) -> None:
    target = f"shared.inbox@partner-{c.slugs['acme']}.test"
    with c.api("eve") as eve:  # rival company gets there first, and keeps at it
        assert eve.post("/me/alternates", json={"email": target}).status_code == 201
        assert eve.post("/me/alternates", json={"email": target}).status_code == 429
    _wait_mails_to(capture, target, 1)
    with c.api("alice") as alice:
        r = alice.post("/me/alternates", json={"email": target})
        assert r.status_code == 201, r.text
        assert r.json()["resent"] is False  # nothing tells her that someone else asked
    mails = _wait_mails_to(capture, target, 2)
    assert any(c.email("alice") in text for text in mails)


def test_adding_another_companys_login_answers_like_any_other_address(
        c: Companies, capture: CaptureSmtp) -> None:
    login = c.email("eve")                               # a user of the rival company
    unknown = f"nobody@{c.domains['rival']}"             # an address of nobody
    with c.api("alice") as alice:
        answers = [(_shape(alice.post("/me/alternates", json={"email": a}), a)) for a in (login, unknown)]
        assert answers[0] == answers[1], answers
        assert answers[0][0] == 201
        again = [_shape(alice.post(f"/me/alternates/{a}/resend"), a) for a in (login, unknown)]
        assert again[0] == again[1], again
        listed = {a["email"]: _shape(httpx.Response(200, json=a), a["email"])
                  for a in alice.get("/me/alternates").json()}
        assert listed[login] == listed[unknown]
    with c.page("alice") as http:
        pages = []
        for a in (f"eve2@{c.domains['rival']}", f"nobody2@{c.domains['rival']}"):
            settings = http.get("/mail/settings")
            r = http.post("/mail/settings/alternates/add",
                          data={"csrf": csrf_of(settings.text), "value": a})
            pages.append((r.status_code, r.headers.get("location")))
        assert pages[0] == pages[1] == (303, "/mail/settings?done=alt_added"), pages
    _wait_mails_to(capture, unknown, 1)
    assert _mails_to(capture, login) == []  # another company's user is never mailed


def test_a_colleagues_login_is_refused_by_name_within_the_company(c: Companies) -> None:
    with c.api("alice") as alice:
        r = alice.post("/me/alternates", json={"email": c.email("bob")})
        assert r.status_code == 409
        assert "login address of another user of your company" in r.json()["detail"]


def test_confirmation_mails_are_capped_per_user_per_day(c: Companies, capture: CaptureSmtp) -> None:
    addrs = [f"a{i}@{c.domains['acme']}-home.test" for i in range(CAP + 1)]
    with c.api("alice") as alice:
        for a in addrs[:CAP]:
            assert alice.post("/me/alternates", json={"email": a}).status_code == 201
        r = alice.post("/me/alternates", json={"email": addrs[CAP]})
        assert r.status_code == 429, r.text
        assert "a day" in r.json()["detail"] and int(r.headers["Retry-After"]) > 0
        # removing an address and adding it again does not reset anything
        assert alice.delete(f"/me/alternates/{addrs[0]}").status_code == 204
        assert alice.post("/me/alternates", json={"email": addrs[0]}).status_code == 429
    with c.api("bob") as bob:  # the cap is hers alone
        assert bob.post("/me/alternates", json={"email": addrs[CAP]}).status_code == 201
    _wait_mails_to(capture, addrs[CAP], 1)
    assert sum(len(_mails_to(capture, a)) for a in addrs) == CAP + 1
