"""A tracked message sent through the user's mailbox, and every kind of client that
fetches its pixel and links (SPEC §13): a person's browser, Gmail's image proxy, Apple
Mail Privacy Protection, a scanner doing HEAD then GET seconds after delivery, a client
that follows the hidden decoy link — each hit kept with its kind and reason, the message
JSON's ``tracking`` counting people and machines apart, and the webhooks of the first
human open and click, once. On SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from tests.support import tracking_kit as tk
from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.spec("13"), pytest.mark.xdist_group("tracking")]

HTML = ('<p>Hello Dana,</p><p>Here is <a href="https://example.com/offer?id=7&amp;x=%C3%A9">'
        'the offer</a> and <a href="https://example.org/terms">our terms</a>; '
        '<a href="mailto:sales@mail.test">write to us</a>.</p>')


def test_people_and_machines_are_told_apart_and_counted_apart(any_world: ComposeWorld) -> None:
    world = any_world
    alice = world.user("alice")
    settings = tk.enable(world, alice)
    assert settings["tracking_opens"] and settings["tracking_clicks"] and settings["tracking_allowed"]
    sent, sent_at = tk.send(world, alice, html=HTML)
    got = tk.received(world, sent["message_id"])
    assert got.pixel is not None and got.decoy is not None and len(got.links) == 3
    assert got.links[2] == "mailto:sales@mail.test"
    assert "/t/" not in got.text and "https://example.com/offer?id=7&x=%C3%A9" in got.text
    # the user's own copy — filed, and appended to the sent folder — carries no tracking
    with world.api(alice.token) as api:
        raw = api.get(f"/messages/{sent['id']}/raw").content
    assert b"/t/" not in raw and b"https://example.com/offer" in raw
    mid = f"<{sent['message_id']}>"
    wait_for(lambda: mid in world.dovecot.message_ids(alice.email, "Sent"))
    assert all(b"/t/" not in m for m in world.dovecot.fetch_all(alice.email, "Sent"))
    before = len(tk.hit_rows(world))

    # machines, all within seconds of delivery
    proxy = tk.fetch(world, got.pixel_path, tk.GMAIL_PROXY)
    assert proxy.status_code == 200 and proxy.headers["content-type"] == "image/gif"
    assert proxy.content.startswith(b"GIF89a")
    assert tk.fetch(world, got.pixel_path, tk.APPLE_MPP).status_code == 200
    head = tk.fetch(world, got.link_path(0), tk.SCANNER, method="HEAD")
    then_get = tk.fetch(world, got.link_path(0), tk.SCANNER)
    assert head.status_code == then_get.status_code == 302
    assert then_get.headers["location"] == "https://example.com/offer?id=7&x=%C3%A9"
    decoy = tk.fetch(world, got.decoy_path, tk.BROWSER)
    assert decoy.status_code == 200 and "location" not in decoy.headers and decoy.content == b""

    # a person, later: opens the message, follows the second link
    tk.after_sending(sent_at, 10.5)
    opened = tk.fetch(world, got.pixel_path, tk.BROWSER)
    clicked = tk.fetch(world, got.link_path(1), tk.BROWSER)
    assert opened.status_code == 200
    assert clicked.status_code == 302 and clicked.headers["location"] == "https://example.org/terms"
    for r in (proxy, head, then_get, decoy, opened, clicked):
        assert "set-cookie" not in r.headers
        assert r.headers["cache-control"].startswith("no-store")
        assert r.headers["referrer-policy"] == "no-referrer"

    rows = tk.hit_rows(world)[before:]
    assert [(link, kind, reason) for _, link, kind, reason in rows] == [
        (None, "machine", "gmail-proxy"), (None, "machine", "apple-mpp"),
        (0, "machine", "head"), (0, "machine", "too-soon"), (-1, "machine", "decoy"),
        (None, "human", "person"), (1, "human", "person")]
    tracking = tk.tracking_of(world, alice, sent)
    assert tracking["opens"]["human"] == 1 and tracking["opens"]["machine"] == 2
    assert tracking["opens"]["first_human_at"]
    assert tracking["clicks"] == [
        {"url": "https://example.com/offer?id=7&x=%C3%A9", "human": 0, "machine": 2},
        {"url": "https://example.org/terms", "human": 1, "machine": 0}]
    assert tracking["hidden_link"] == 1

    # a second person open and click: counted, but no second webhook
    assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 200
    time.sleep(1.1)
    assert tk.fetch(world, got.link_path(1), tk.BROWSER).status_code == 302
    [opened_event] = tk.events_for(world, "message.opened", sent["id"])
    [clicked_event] = tk.events_for(world, "link.clicked", sent["id"])
    time.sleep(4)  # past the confirmation delay of the second hits: still one each
    assert len([e for e in world.hook_events("message.opened") if e["data"]["id"] == sent["id"]]) == 1
    assert len([e for e in world.hook_events("link.clicked") if e["data"]["id"] == sent["id"]]) == 1
    assert opened_event["data"]["message_id"] == sent["message_id"]
    assert opened_event["data"]["thread_id"] == sent["thread_id"]
    assert opened_event["data"]["user"] == alice.email
    assert clicked_event["data"]["url"] == "https://example.org/terms"
    assert clicked_event["data"]["link"] == 1
    tracking = tk.tracking_of(world, alice, sent)
    assert tracking["opens"]["human"] == 2 and tracking["clicks"][1]["human"] == 2


def test_a_scanner_clicking_every_link_at_once_is_a_machine_first_click_included(
        world: ComposeWorld, alice: Mailuser) -> None:
    tk.enable(world, alice, opens=False)
    sent, sent_at = tk.send(world, alice, html=HTML)
    got = tk.received(world, sent["message_id"])
    assert got.pixel is None and got.decoy is not None
    tk.after_sending(sent_at, 10.5)  # late enough that only the burst gives it away
    before = len(tk.hit_rows(world))
    first = tk.fetch(world, got.link_path(0), tk.BROWSER)
    second = tk.fetch(world, got.link_path(1), tk.BROWSER)
    assert first.status_code == second.status_code == 302
    rows = tk.hit_rows(world)[before:]
    assert [(link, kind, reason) for _, link, kind, reason in rows] == [
        (0, "machine", "burst"), (1, "machine", "burst")]
    tracking = tk.tracking_of(world, alice, sent)
    assert tracking["opens"] is None
    assert [(c["human"], c["machine"]) for c in tracking["clicks"]] == [(0, 1), (0, 1)]
    time.sleep(4)  # the first click's webhook was held back, and is not sent
    assert not [e for e in world.hook_events("link.clicked") if e["data"]["id"] == sent["id"]]


def test_the_senders_own_view_is_a_machine_hit(world: ComposeWorld, alice: Mailuser) -> None:
    from tests.integration.web.test_pages import sign_in

    tk.enable(world, alice)
    sent, _ = tk.send(world, alice, html=HTML)
    got = tk.received(world, sent["message_id"])
    http, r = sign_in(world.srv.http_url, alice.token)
    try:
        assert r.status_code == 303
        cookie = http.cookies.get("bccd_session")
        assert cookie
        before = len(tk.hit_rows(world))
        own = tk.fetch(world, got.pixel_path, tk.BROWSER, cookies={"bccd_session": cookie})
        assert own.status_code == 200 and "set-cookie" not in own.headers
        forged = tk.fetch(world, got.pixel_path, tk.BROWSER, cookies={"bccd_session": "x" * 43})
        assert forged.status_code == 200
    finally:
        http.close()
    rows = tk.hit_rows(world)[before:]
    assert [(kind, reason) for _, _, kind, reason in rows] == [
        ("machine", "sender"), ("human", "person")]


def test_a_prefetching_browser_and_a_mail_scanner_by_name_are_machines(
        world: ComposeWorld, alice: Mailuser) -> None:
    tk.enable(world, alice)
    sent, sent_at = tk.send(world, alice, html=HTML)
    got = tk.received(world, sent["message_id"])
    tk.after_sending(sent_at, 10.5)
    before = len(tk.hit_rows(world))
    assert tk.fetch(world, got.link_path(0), tk.BROWSER,
                    headers={"Sec-Purpose": "prefetch"}).status_code == 302
    time.sleep(1.1)
    assert tk.fetch(world, got.link_path(1), tk.PROOFPOINT).status_code == 302
    assert tk.fetch(world, got.pixel_path, None).status_code == 200
    rows = tk.hit_rows(world)[before:]
    assert [(kind, reason) for _, _, kind, reason in rows] == [
        ("machine", "prefetch"), ("machine", "scanner"), ("machine", "no-user-agent")]
