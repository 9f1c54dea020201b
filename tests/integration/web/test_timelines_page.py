"""Clean timelines on the Mail page in headless Chromium, in the API and in webhooks
(SPEC §5.10, §5.13): "Hide automated" hides an auto-reply and a newsletter, a calendar
invite is a meeting on its conversation with the attendees' answers in the organizer's
local time, a person whose address bounced is marked, an admin changes the company's
settings — and ``meeting.updated`` is posted for the invite and for the answer."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.automated import SHAPES
from tests.support.browser import needs_chromium
from tests.support.invites import ics, invite_mail
from tests.support.linking_world import Tenant
from tests.support.server import BccdServer
from tests.support.wait import wait_until
from tests.support.web_hooks import Receiver

pytestmark = [pytest.mark.xdist_group("web_timelines"), pytest.mark.spec("5.10"),
              pytest.mark.spec("5.13")]


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, hook: Receiver) -> Iterator[dict[str, Any]]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    srv = BccdServer(tmp_path_factory.mktemp("timelines"),
                     {"webhooks": {"url": hook.url, "secret": secret}})
    srv.start()
    try:
        t = Tenant(srv, "timelines")
        t.user("root", admin=True)
        bob = f"bob@client-{t.slug}.test"
        t.person("Bob", bob)
        alice = t.alice["email"]
        people = {alice: "ACCEPTED", bob: "NEEDS-ACTION"}
        invite = invite_mail(f"Alice <{alice}>", f"Bob <{bob}>", ics(
            "REQUEST", organizer=alice, attendees=people, summary="Kickoff"),
            message_id=f"<inv-{uuid.uuid4().hex[:6]}@{t.domain}>", subject="Invitation: Kickoff")
        assert t.send(invite)[0] == 250
        answer = invite_mail(f"Bob Client <{bob}>", alice, ics(
            "REPLY", organizer=alice, attendees={bob: "ACCEPTED"}), method="REPLY",
            subject="Accepted: Kickoff")
        assert t.forward("alice", answer)[0] == 250
        assert t.forward("alice", SHAPES["newsletter"].build(f"news@{t.slug}-news.test",
                                                             alice))[0] == 250
        assert t.forward("alice", SHAPES["exchange_out_of_office"].build(
            f"someone@{t.slug}-x.test", alice))[0] == 250
        first = f"<q42-{uuid.uuid4().hex[:6]}@{t.domain}>"
        assert t.send(t.mail(to=f"Bob <{bob}>", subject="Quote #42", message_id=first))[0] == 250
        assert t.forward("alice", SHAPES["postfix_shaped_dsn"].build(
            bob, alice, in_reply_to=first))[0] == 250
        yield {"srv": srv, "t": t, "bob": bob}
    finally:
        srv.stop()



def sign_in(browser: Any, srv: BccdServer, token: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{srv.http_url}/mail/login")
    page.click("summary")
    page.fill("#token", token)
    page.click("details button[type=submit]")
    page.wait_for_url("**/mail")
    return page


def test_meeting_updated_is_posted_for_the_invite_and_the_answer(
        world: dict[str, Any], hook: Receiver) -> None:
    def meetings() -> list[dict[str, Any]]:
        return [h.event()["data"] for h in hook.delivered()
                if h.event()["type"] == "meeting.updated"]

    got = wait_until(lambda: len(meetings()) >= 2 and meetings(), timeout=30)
    by_change = {m["change"]: m for m in got}   # deliveries may arrive in either order
    assert sorted(by_change) == ["answered", "created"] and len(got) == 2
    created, answered = by_change["created"]["meeting"], by_change["answered"]["meeting"]
    assert created["summary"] == "Kickoff" and created["organizer"] == world["t"].alice["email"]
    assert {a["email"]: a["answer"] for a in created["attendees"]}[world["bob"]] == "needs-action"
    assert {a["email"]: a["answer"] for a in answered["attendees"]}[world["bob"]] == "accepted"
    assert all(m["user"] == world["t"].alice["email"] and m["thread_id"] for m in got)

    def categories() -> set[str]:
        return {h.event()["data"]["category"] for h in hook.delivered()
                if h.event()["type"] == "message.stored"}

    wanted = {"person", "bulk", "auto_reply", "bounce"}
    assert wait_until(lambda: categories() >= wanted, timeout=30)


def test_the_thread_json_carries_the_meeting(world: dict[str, Any]) -> None:
    t = world["t"]
    [inv] = [th for th in t.threads() if th["subject"] == "Invitation: Kickoff"]
    with t.api() as api:
        shown = api.get(f"/threads/{inv['thread_id']}").json()
    m = shown["meeting"]
    assert (m["uid"], m["status"], m["method"]) == ("kickoff-1@client.test", "confirmed", "REPLY")
    assert (m["start"], m["timezone"]) == ("2026-07-10T10:00:00+02:00", "W. Europe Standard Time")
    assert {a["email"]: a["answer"] for a in m["attendees"]} == {
        t.alice["email"]: "accepted", world["bob"]: "accepted"}


@needs_chromium
def test_hide_automated_meeting_and_bouncing_in_chromium(
        world: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    srv, t = world["srv"], world["t"]
    page = sign_in(browser, srv, t.alice["api_token"])
    try:
        assert page.locator("a.subject", has_text="Our November news").is_visible()
        assert page.locator("li[data-category=bulk] .category").inner_text() == "bulk / list"
        page.check("#hide-automated")
        page.click("form.search button[type=submit]")
        page.wait_for_url("**hide_automated=1**")
        assert page.locator("a.subject", has_text="Our November news").count() == 0
        assert page.locator("a.subject", has_text="Automatic reply").count() == 0
        assert page.locator("a.subject", has_text="Quote #42").is_visible()
        assert page.locator("#hide-automated").is_checked()
        page.screenshot(path=str(tmp_path / "hide-automated.png"), full_page=True)

        page.click("a.subject:has-text('Invitation: Kickoff')")
        card = page.locator("#meeting")
        assert card.locator("h2", has_text="Kickoff").is_visible()
        assert "2026-07-10 10:00 UTC+02:00" in card.locator(".when").inner_text()
        assert card.locator("li[data-answer=accepted]").count() == 2
        page.screenshot(path=str(tmp_path / "meeting.png"), full_page=True)

        page.goto(f"{srv.http_url}/mail")
        page.click("a.subject:has-text('Quote #42')")
        badge = page.locator("#links .badge.person.bouncing")
        assert badge.is_visible() and "bouncing" in badge.inner_text()
        assert page.locator(".category[data-category=bounce]").is_visible()
    finally:
        page.context.close()


@needs_chromium
def test_an_admin_sets_the_company_settings_in_chromium(world: dict[str, Any], browser: Any) -> None:
    srv, t = world["srv"], world["t"]
    page = sign_in(browser, srv, t.users["root"]["api_token"])
    try:
        page.goto(f"{srv.http_url}/mail/settings")
        card = page.locator("#company-settings")
        assert card.is_visible()
        card.locator("input[name=automated_mail][value=drop]").check()
        card.locator("input[name=domains]").fill(f"{t.domain}, eu.{t.domain}")
        card.locator("button[type=submit]").click()
        page.wait_for_url("**done=saved")
        assert page.locator(".notice", has_text="Settings saved.").is_visible()
        shown = {c["slug"]: c for c in srv.cli("company", "list")}[t.slug]
        assert (shown["automated_mail"], shown["domains"]) == ("drop", [t.domain, f"eu.{t.domain}"])
    finally:
        page.context.close()
        srv.cli("company", "set", t.slug, "--automated-mail", "unlinked", "--domains", "")
