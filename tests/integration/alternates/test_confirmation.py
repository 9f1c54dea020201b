"""SPEC §6 end to end: `bccd alt add` → confirmation mail through the outbound relay →
the link's page (GET shows, POST confirms) → copies from the address are accepted."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.alternates.helpers import confirm_link, token_of
from tests.support.capture_smtp import CaptureSmtp
from tests.support.mail import make_message, send
from tests.support.server import CliError, write_config
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("6")

ALT = "alice.private@home.test"


def _alt_status(srv, alt: str = ALT) -> str | None:
    for a in srv.cli("alt", "list", "alice@acme.test"):
        if a["email"] == alt:
            return a["status"]
    return None


def test_adding_an_alternate_emails_a_multipart_confirmation_with_the_link(serve, capture: CaptureSmtp) -> None:
    srv = serve()
    out = srv.cli("alt", "add", "alice@acme.test", "Alice.Private@HOME.test")
    assert out["email"] == ALT and out["status"] == "pending" and out["confirmation"] == "queued"
    assert "token" not in str(out)
    [mail] = capture.wait_for(1)
    assert mail.rcpt_tos == [ALT]
    assert mail.mail_from == "bccd@bcc.localhost"
    msg = mail.message()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert ALT in msg["Subject"] and "confirm" in msg["Subject"].lower()
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] and msg["Date"]
    text = mail.part("text/plain")
    assert "Alice" in text and "alice@acme.test" in text
    assert "filed in the CRM" in text  # what confirming does
    link = confirm_link(mail)
    assert link.startswith(f"{srv.http_url}/confirm/")
    assert len(token_of(link)) >= 40
    assert srv.cli("user", "show", "alice@acme.test")["alternates"] == [
        {"email": ALT, "status": "pending"}]


def test_get_shows_a_confirm_button_and_only_post_confirms(serve, capture: CaptureSmtp) -> None:
    srv = serve()
    raw = make_message(frm=f"Alice <{ALT}>", message_id="<from-alt@home.test>")
    code, _ = send(srv.smtp_port, srv.alice["bcc_address"], raw, mail_from=ALT)
    assert code == 550  # not confirmed yet (auth.unverified = reject)
    srv.cli("alt", "add", "alice@acme.test", ALT)
    link = confirm_link(capture.wait_for(1)[0])
    with httpx.Client(timeout=10) as http:
        for _ in range(3):  # link scanners prefetch, users reload: nothing changes
            page = http.get(link)
            assert page.status_code == 200
            assert 'method="post"' in page.text and "<button" in page.text
            assert ALT in page.text
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert http.head(link).status_code == 200
        assert _alt_status(srv) == "pending"
        done = http.post(link, data={"token": token_of(link)})
        assert done.status_code == 200 and "confirmed" in done.text
    assert _alt_status(srv) == "confirmed"
    assert srv.cli("user", "show", "alice@acme.test")["alternates"] == [
        {"email": ALT, "status": "confirmed"}]
    assert send(srv.smtp_port, srv.alice["bcc_address"], raw, mail_from=ALT)[0] == 250
    [thread] = srv.cli("mail", "list", "alice@acme.test")
    shown = srv.cli("mail", "show", str(thread["thread_id"]))
    assert shown["messages"][0]["from"] == ALT
    assert shown["messages"][0]["direction"] == "outgoing"


def test_a_used_token_shows_the_used_page_and_confirms_only_once(serve, capture: CaptureSmtp) -> None:
    srv = serve()
    srv.cli("alt", "add", "alice@acme.test", ALT)
    link = confirm_link(capture.wait_for(1)[0])
    with httpx.Client(timeout=10) as http:
        assert http.post(link, data={"token": token_of(link)}).status_code == 200
        again = http.post(link, data={"token": token_of(link)})
        assert again.status_code == 410 and "already used" in again.text
        assert http.get(link).status_code == 410
    with pytest.raises(CliError) as err:
        srv.cli("alt", "confirm", token_of(link))
    assert err.value.code == 1 and "used already" in err.value.stderr


def test_a_post_without_the_matching_token_in_the_form_changes_nothing(serve, capture: CaptureSmtp) -> None:
    srv = serve()
    srv.cli("alt", "add", "alice@acme.test", ALT)
    link = confirm_link(capture.wait_for(1)[0])
    with httpx.Client(timeout=10) as http:
        assert http.post(link).status_code == 400
        assert http.post(link, data={"token": "a" * 48}).status_code == 400
        assert http.post(link, json={"token": token_of(link)}).status_code == 400
        assert http.post(link, data={"token": token_of(link) + "x"}).status_code == 400
        assert http.post(link, data={f"f{i}": "x" for i in range(20)}).status_code == 400
        assert http.post(link, data={"token": token_of(link), "pad": "x" * 5000}).status_code == 400
    assert _alt_status(srv) == "pending"


def test_unknown_and_malformed_tokens_are_404(serve) -> None:
    srv = serve()
    with httpx.Client(timeout=10) as http:
        for token in ("a" * 48, "A" * 48, "short", "%3Cscript%3E"):
            r = http.get(f"{srv.http_url}/confirm/{token}")
            assert r.status_code == 404 and "not valid" in r.text
            assert "<script>" not in r.text
        r = http.post(f"{srv.http_url}/confirm/{'a' * 48}", data={"token": "a" * 48})
        assert r.status_code == 404
    with pytest.raises(CliError) as err:
        srv.cli("alt", "confirm", "a" * 48)
    assert "no such confirmation token" in err.value.stderr


def test_an_expired_token_is_410_and_does_not_confirm(serve, capture: CaptureSmtp) -> None:
    srv = serve(confirm={"ttl": "1s", "resend_interval": "1s"})
    srv.cli("alt", "add", "alice@acme.test", ALT)
    link = confirm_link(capture.wait_for(1)[0])
    time.sleep(1.2)
    with httpx.Client(timeout=10) as http:
        page = http.get(link)
        assert page.status_code == 410 and "expired" in page.text
        assert f"bccd alt add alice@acme.test {ALT}" in page.text
        assert http.post(link, data={"token": token_of(link)}).status_code == 410
    assert _alt_status(srv) == "pending"
    with pytest.raises(CliError) as err:
        srv.cli("alt", "confirm", token_of(link))
    assert "expired" in err.value.stderr
    # adding again sends a fresh link that works (with a TTL the outbox's poll and the
    # delivery cannot outlast on a loaded machine: the CLI reads it from the config)
    srv.sections["confirm"]["ttl"] = "1h"
    write_config(srv.config, srv.sections)
    srv.cli("alt", "add", "alice@acme.test", ALT)
    fresh = confirm_link(capture.wait_for(2)[1])
    assert srv.cli("alt", "confirm", token_of(fresh))["status"] == "confirmed"


def test_resending_is_rate_limited_per_address_and_replaces_the_link(serve, capture: CaptureSmtp) -> None:
    # refused for an hour while the refusals below are checked (however slow the machine),
    # then the interval is shortened (the CLI reads it from the config) and waited out
    srv = serve(confirm={"resend_interval": "1h"})
    srv.cli("alt", "add", "alice@acme.test", ALT)
    first = confirm_link(capture.wait_for(1)[0])
    with pytest.raises(CliError) as err:
        srv.cli("alt", "add", "alice@acme.test", ALT)
    assert err.value.code == 1 and "try again in" in err.value.stderr
    with pytest.raises(CliError):
        srv.cli("alt", "resend", "alice@acme.test", ALT)
    # the limit is per user and address: another user adding the same address is not held
    # up by alice's (SPEC §6: no user can block another's confirmation)
    srv.setup_user("bob@acme.test", name="Bob")
    assert srv.cli("alt", "add", "bob@acme.test", ALT)["resent"] is False
    assert "bob@acme.test" in capture.wait_for(2)[1].part("text/plain")
    srv.sections["confirm"]["resend_interval"] = "1s"
    write_config(srv.config, srv.sections)
    time.sleep(2.1)
    assert srv.cli("alt", "resend", "alice@acme.test", ALT)["resent"] is True
    second = confirm_link(capture.wait_for(3)[2])
    assert second != first
    with httpx.Client(timeout=10) as http:
        assert http.get(first).status_code == 404  # replaced by the newer email
        assert http.post(second, data={"token": token_of(second)}).status_code == 200


def test_relay_down_at_add_time_the_mail_goes_out_when_it_is_back(make_server) -> None:
    relay = CaptureSmtp()  # not started: connections to its port are refused
    srv = make_server({"outbound": {"port": relay.port}})
    srv.setup_user()
    out = srv.cli("alt", "add", "alice@acme.test", ALT)  # adding never waits for the relay
    assert out["status"] == "pending"
    wait_until(lambda: any(e.get("event") == "outbox_job_failed" for e in srv.log_events()))
    with relay:
        [mail] = relay.wait_for(1, timeout=15)
        assert mail.rcpt_tos == [ALT]
        confirm_link(mail)
        assert len(relay.settle(1.0)) == 1  # delivered once


def test_removing_a_confirmed_alternate_refuses_its_copies_again(serve, capture: CaptureSmtp) -> None:
    srv = serve()
    srv.cli("alt", "add", "alice@acme.test", ALT)
    assert srv.cli("alt", "confirm", token_of(confirm_link(capture.wait_for(1)[0])))["status"] == "confirmed"
    raw1 = make_message(frm=f"Alice <{ALT}>", subject="one")
    assert send(srv.smtp_port, srv.alice["bcc_address"], raw1, mail_from=ALT)[0] == 250
    assert srv.cli("alt", "remove", "alice@acme.test", ALT) == {"email": ALT, "removed": True}
    assert srv.cli("alt", "list", "alice@acme.test") == []
    raw2 = make_message(frm=f"Alice <{ALT}>", subject="two")
    code, text = send(srv.smtp_port, srv.alice["bcc_address"], raw2, mail_from=ALT)
    assert code == 550 and text.startswith(b"5.7.1")
    assert b"bccd alt add" in text and ALT.encode() in text
    assert b"alice@acme.test" not in text  # the refusal never names the user
    assert [t["subject"] for t in srv.cli("mail", "list", "alice@acme.test")] == ["one"]
    with pytest.raises(CliError):
        srv.cli("alt", "remove", "alice@acme.test", ALT)


def test_addresses_that_cannot_be_alternates_are_refused(serve) -> None:
    srv = serve()
    srv.setup_user("bob@acme.test", name="Bob")
    for bad, why in (("alice@acme.test", "login address of alice"),
                     ("bob@acme.test", "another user"),
                     ("acme+abc@bcc.localhost", "Smart Bcc address"),
                     ("not-an-address", "alternate address")):
        with pytest.raises(CliError) as err:
            srv.cli("alt", "add", "alice@acme.test", bad)
        assert err.value.code == 1 and why in err.value.stderr, err.value.stderr
    assert srv.cli("alt", "list", "alice@acme.test") == []
