"""Who decides what is tracked (SPEC §13): users opt in (default off) through
``/api/v1/me/settings``, a message may decide otherwise (``track_opens``,
``track_clicks``), the company's ``tracking = off`` forbids it — and stops recording hits
on mail already sent while its links keep working. Only HTML mail sent from bccd is
tracked: plain text is not, Bcc and synced copies never are, and a retried message goes
out with the same tracked bytes."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from tests.support import tracking_kit as tk
from tests.support.compose_world import ComposeWorld, wait_for
from tests.support.mail import make_message
from tests.support.server import CliError

pytestmark = [pytest.mark.slow, pytest.mark.spec("13"), pytest.mark.xdist_group("tracking")]

HTML = '<p>Hi, see <a href="https://example.com/x">this</a>.</p>'


def test_settings_are_off_by_default_strict_booleans_and_messages_follow_them(
        world: ComposeWorld) -> None:
    user = world.user("settings")
    with world.api(user.token) as api:
        got = api.get("/me/settings").json()
        assert (got["tracking_opens"], got["tracking_clicks"], got["tracking_allowed"]) == (
            False, False, True)
        me = api.get("/me").json()
        assert (me["tracking_opens"], me["tracking_clicks"]) == (False, False)
        for bad in ({"tracking_opens": "yes"}, {"tracking_clicks": 1}, {"tracking_opens": None,
                                                                         "x": 1}):
            r = api.patch("/me/settings", json=bad)
            assert r.status_code == 422 and r.headers["content-type"].startswith(
                "application/problem+json"), bad
    sent, _ = tk.send(world, user, html=HTML, subject="Not tracked by default")
    got_mail = tk.received(world, sent["message_id"])
    assert "/t/" not in got_mail.html and got_mail.links == ["https://example.com/x"]
    assert tk.tracking_of(world, user, sent) is None
    on = tk.enable(world, user, opens=True, clicks=False)
    assert (on["tracking_opens"], on["tracking_clicks"]) == (True, False)
    sent, _ = tk.send(world, user, html=HTML, subject="Opens only")
    got_mail = tk.received(world, sent["message_id"])
    assert got_mail.pixel and got_mail.decoy is None and got_mail.links == ["https://example.com/x"]
    assert tk.tracking_of(world, user, sent) == {
        "opens": {"human": 0, "machine": 0, "first_human_at": None}, "clicks": None,
        "hidden_link": 0}


def test_a_message_may_decide_otherwise_than_the_settings(world: ComposeWorld) -> None:
    user = world.user("override")
    sent, _ = tk.send(world, user, html=HTML, subject="Clicks for this one", track_clicks=True)
    got = tk.received(world, sent["message_id"])
    assert got.pixel is None and got.decoy and got.links[0].startswith(world.srv.http_url + "/t/c/")
    tk.enable(world, user)
    sent, _ = tk.send(world, user, html=HTML, subject="Not this one", track_opens=False,
                      track_clicks=False)
    got = tk.received(world, sent["message_id"])
    assert "/t/" not in got.html and tk.tracking_of(world, user, sent) is None


def test_plain_text_is_never_tracked_and_asking_for_it_is_refused(world: ComposeWorld) -> None:
    user = world.user("plain")
    tk.enable(world, user)
    sent, _ = tk.send(world, user, text="See https://example.com/x", subject="Plain text")
    [raw] = world.received(sent["message_id"])
    assert b"/t/" not in raw and tk.tracking_of(world, user, sent) is None
    with world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "x",
                                        "text": "plain", "track_opens": True})
        assert r.status_code == 422 and r.json()["detail"].startswith("track_opens:")
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "x",
                                        "html": "<p>x</p>", "track_clicks": "yes"})
        assert r.status_code == 422


def test_bcc_and_synced_copies_are_never_tracked(world: ComposeWorld) -> None:
    user = world.user("bccer")
    tk.enable(world, user)
    # mail the user sent from their own mail program, with their Smart Bcc address in Bcc
    raw = make_message(frm=f"Bccer <{user.email}>", to="Dana Client <dana@client.test>",
                       subject="Sent from my own mail program",
                       html='<p><a href="https://example.com/own">own</a></p>')
    with smtplib.SMTP("127.0.0.1", world.srv.smtp_port, timeout=30) as smtp:
        smtp.sendmail(user.email, [user.bcc_address], raw)
    with world.api(user.token) as api:
        listed = wait_for(lambda: [t for t in api.get("/threads").json()["threads"]
                                   if t["subject"] == "Sent from my own mail program"])
        thread = api.get(f"/threads/{listed[0]['thread_id']}").json()
        # a message sent from bccd and Bcc'd to the Smart Bcc address: one message, the
        # compose one's tracking, the Bcc copy (the recipients' tracked bytes) adds nothing
        r = api.post("/messages", json={"to": ["dana@client.test"], "bcc": [user.bcc_address],
                                        "subject": "Composed and Bcc'd", "html": HTML})
        assert r.status_code == 201
        sent = r.json()
        t = wait_for(lambda: (lambda t: t if sorted(t["messages"][0]["sources"]) == [
            "bcc", "compose"] else None)(api.get(f"/threads/{sent['thread_id']}").json()))
        filed = api.get(f"/messages/{sent['id']}/raw").content
    [m] = thread["messages"]
    assert m["sources"] == ["bcc"] and m["tracking"] is None
    [c] = t["messages"]
    assert c["tracking"] is not None and c["tracking"]["clicks"][0]["url"] == "https://example.com/x"
    assert b"/t/" not in filed
    # the synced copy of the sent folder is the same message, still untracked bytes
    mid = f"<{sent['message_id']}>"
    wait_for(lambda: mid in world.dovecot.message_ids(user.email, "Sent"))
    world.srv.cli("imap", "sync", "--account", str(user.mailbox_id), "--once")
    with world.api(user.token) as api:
        t = wait_for(lambda: (lambda t: t if "imap" in t["messages"][0]["sources"] else None)(
            api.get(f"/threads/{sent['thread_id']}").json()))
    assert len(t["messages"]) == 1 and t["messages"][0]["tracking"] == c["tracking"]


def test_a_company_that_turns_tracking_off_stops_it_at_once_and_links_keep_working(
        world: ComposeWorld) -> None:
    user = world.user("policy")
    tk.enable(world, user)
    sent, sent_at = tk.send(world, user, html=HTML, subject="Before the policy changed")
    got = tk.received(world, sent["message_id"])
    out = world.srv.cli("company", "set", "acme", "--tracking", "off")
    try:
        assert out["tracking"] == "off" and out["slug"] == "acme"
        with world.api(user.token) as api:
            s = api.get("/me/settings").json()
            assert s["tracking_allowed"] is False
            r = api.patch("/me/settings", json={"tracking_opens": True})
            assert r.status_code == 409 and r.json()["detail"].startswith("tracking_opens:")
            assert api.patch("/me/settings", json={"tracking_opens": False}).status_code == 200
            r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "x",
                                            "html": HTML, "track_clicks": True})
            assert r.status_code == 409 and r.json()["detail"].startswith("track_clicks:")
        # the user's settings say clicks, the company says no: not tracked
        later, _ = tk.send(world, user, html=HTML, subject="After the policy changed")
        assert "/t/" not in tk.received(world, later["message_id"]).html
        # the message sent before: its link still goes where it went, nothing is recorded
        tk.after_sending(sent_at, 10.5)
        before = tk.hit_rows(world)
        r = tk.fetch(world, got.link_path(0), tk.BROWSER)
        assert r.status_code == 302 and r.headers["location"] == "https://example.com/x"
        assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 200
        assert tk.hit_rows(world) == before
    finally:
        assert world.srv.cli("company", "set", "acme", "--tracking", "allowed")["tracking"] == "allowed"
    time.sleep(1.1)
    assert tk.fetch(world, got.link_path(0), tk.BROWSER).status_code == 302
    assert tk.tracking_of(world, user, sent)["clicks"][0]["human"] == 1


def test_company_set_without_a_flag_shows_the_policy_and_refuses_an_unknown_one(
        world: ComposeWorld) -> None:
    """SPEC §8: each flag of ``company set`` is optional; without one it changes nothing
    and shows the company's settings, the tracking policy among them."""
    assert world.srv.cli("company", "set", "acme")["tracking"] == "allowed"
    r = world.srv.cli_proc("company", "set", "acme", "--tracking", "maybe")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_a_queued_message_is_retried_with_its_tracked_bytes(world: ComposeWorld) -> None:
    user = world.user("queued")
    tk.enable(world, user)
    world.submission.defer("dana@client.test")
    try:
        with world.api(user.token) as api:
            r = api.post("/messages", json={"to": ["Dana Client <dana@client.test>"],
                                            "subject": "Retried and tracked", "html": HTML})
        assert r.status_code == 202, r.text
        sent = r.json()
    finally:
        world.submission.clear_refusals()
    wait_for(lambda: world.received(sent["message_id"], timeout=0), timeout=60)
    got = tk.received(world, sent["message_id"])
    assert got.pixel and got.links[0].startswith(world.srv.http_url + "/t/c/")
    # the too-soon rule counts from when the server accepted it, on the retry
    r = tk.fetch(world, got.link_path(0), tk.BROWSER)
    assert r.status_code == 302
    assert tk.hit_rows(world)[-1][2:] == ("machine", "too-soon")
    with world.api(user.token) as api:
        assert b"/t/" not in api.get(f"/messages/{sent['id']}/raw").content


def test_bccd_send_decides_for_its_message(world: ComposeWorld, tmp_path: Path) -> None:
    user = world.user("cli")
    html = tmp_path / "offer.html"
    html.write_text(HTML)
    out = world.srv.cli("send", user.email, "--to", "dana@client.test", "--subject",
                        "Sent from the command line", "--html-file", str(html),
                        "--track-clicks", "on")
    assert out["status"] == "sent"
    got = tk.received(world, out["message_id"])
    assert got.pixel is None and got.links[0].startswith(world.srv.http_url + "/t/c/")
    text = tmp_path / "note.txt"
    text.write_text("plain")
    with pytest.raises(CliError) as e:
        world.srv.cli("send", user.email, "--to", "dana@client.test", "--subject", "x",
                      "--text-file", str(text), "--track-opens", "on")
    assert e.value.code == 1 and "track_opens: only HTML mail can be tracked" in e.value.stderr
