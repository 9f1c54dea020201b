"""SPEC §4.4 end to end with `auth.unverified = "quarantine"` (auth.mode = off here; the
authenticity side is in test_quarantine_authenticity.py): authentic copies from an
unconfirmed address are kept (250), the user is told once a day per address (a notice
that never confirms anything: confirming emails the address itself), confirming releases
the copies into the mail store exactly once, and the quarantine is bounded."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from bccd.quarantine import copies as quarantine
from bccd.store.db import Database
from tests.integration.alternates.helpers import confirm_link, token_of
from tests.support.capture_smtp import CaptureSmtp
from tests.support.mail import make_message, send
from tests.support.server import CliError
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("4.4")

ALT = "alice@home.test"
QUARANTINE = {"auth": {"unverified": "quarantine"}}


def _send_from(srv, addr: str, subject: str, message_id: str | None = None) -> tuple[int, bytes]:
    raw = make_message(frm=f"Alice <{addr}>", subject=subject, message_id=message_id)
    return send(srv.smtp_port, srv.alice["bcc_address"], raw, mail_from=addr)


def _subjects(srv) -> list[str]:
    return sorted(t["subject"] for t in srv.cli("mail", "list", "alice@acme.test"))


def test_copies_from_an_unconfirmed_address_are_quarantined_and_the_user_is_told_once(
        serve, capture: CaptureSmtp) -> None:
    srv = serve(**QUARANTINE)
    assert _send_from(srv, ALT, "first") == (250, b"2.0.0 Message accepted")
    assert _send_from(srv, ALT, "second")[0] == 250
    held = srv.cli("quarantine", "list", "alice@acme.test")
    assert [(q["from"], q["subject"], q["status"]) for q in held] == [
        (ALT, "first", "held"), (ALT, "second", "held")]
    assert all(q["size"] > 100 for q in held)
    assert srv.cli("mail", "list", "alice@acme.test") == []
    assert srv.cli("rejections", "list", "alice@acme.test") == []
    # the address became a pending alternate; one notice, to the user's login address
    assert srv.cli("user", "show", "alice@acme.test")["alternates"] == [
        {"email": ALT, "status": "pending"}]
    [notice] = capture.wait_for(1)
    assert notice.rcpt_tos == ["alice@acme.test"]
    msg = notice.message()
    assert msg.get_content_type() == "multipart/alternative"
    assert ALT in msg["Subject"] and "quarantine" in msg["Subject"]
    text = notice.part("text/plain")
    assert f"sent from {ALT}" in text and "confirm it to file these emails" in text
    assert "/mail/settings" in text and "/confirm/" not in notice.message().as_string()
    # another copy from the same address: no second notice today
    assert _send_from(srv, ALT, "third")[0] == 250
    # another address: its own notice
    assert _send_from(srv, "alice@other.test", "elsewhere")[0] == 250
    mails = capture.wait_for(2)
    assert "alice@other.test" in mails[1].message()["Subject"]
    assert len(capture.settle(1.2)) == 2
    # the same message delivered twice is held once
    assert _send_from(srv, ALT, "again", message_id="<dup@home.test>")[0] == 250
    assert _send_from(srv, ALT, "again", message_id="<dup@home.test>")[0] == 250
    assert len(srv.cli("quarantine", "list", "alice@acme.test")) == 5


def _confirmation_to(srv, capture: CaptureSmtp, address: str) -> str:
    """The user asks for the confirmation (as the notice says: Mail page settings, or
    ``alt resend``); it is emailed to the quarantined address itself."""
    srv.cli("alt", "resend", "alice@acme.test", address)
    return confirm_link(wait_until(lambda: next(
        (m for m in capture.messages if m.rcpt_tos == [address]), None)))


def test_confirming_through_the_address_releases_the_copies_exactly_once(
        serve, capture: CaptureSmtp) -> None:
    srv = serve(**QUARANTINE)
    for subject in ("one", "two"):
        assert _send_from(srv, ALT, subject)[0] == 250
    assert _send_from(srv, "someone@else.test", "not released")[0] == 250
    capture.wait_for(2)  # the two notices, to the user
    link = _confirmation_to(srv, capture, ALT)
    with httpx.Client(timeout=10) as http:
        page = http.get(link)
        assert page.status_code == 200 and "2 Bcc copies" in page.text
        assert _subjects(srv) == []
        assert http.post(link, data={"token": token_of(link)}).status_code == 200
        wait_until(lambda: _subjects(srv) == ["one", "two"])
        assert http.post(link, data={"token": token_of(link)}).status_code == 410
    held = {q["subject"]: q["status"] for q in srv.cli("quarantine", "list", "alice@acme.test")}
    assert held == {"one": "released", "two": "released", "not released": "held"}
    threads = srv.cli("mail", "list", "alice@acme.test")
    assert all(t["messages"] == 1 for t in threads)
    msg = srv.cli("mail", "show", str(threads[0]["thread_id"]))["messages"][0]
    assert msg["from"] == ALT and msg["direction"] == "outgoing" and msg["sources"] == ["bcc"]
    # new copies from the now-confirmed address are filed directly
    assert _send_from(srv, ALT, "three")[0] == 250
    assert _subjects(srv) == ["one", "three", "two"]
    # an operator release of an already released copy changes nothing
    released_id = next(q["id"] for q in srv.cli("quarantine", "list", "alice@acme.test")
                       if q["subject"] == "one")
    assert srv.cli("quarantine", "release", str(released_id))["outcome"] == "duplicate"
    assert sum(t["messages"] for t in srv.cli("mail", "list", "alice@acme.test")) == 3


def test_an_operator_can_release_one_quarantined_copy(serve) -> None:
    srv = serve(**QUARANTINE)
    assert _send_from(srv, ALT, "held back")[0] == 250
    [q] = srv.cli("quarantine", "list", "alice@acme.test")
    out = srv.cli("quarantine", "release", str(q["id"]))
    assert out["outcome"] == "stored" and out["thread_id"]
    assert _subjects(srv) == ["held back"]
    assert srv.cli("quarantine", "list", "alice@acme.test", "--held") == []
    assert srv.cli("quarantine", "release", str(q["id"]))["outcome"] == "duplicate"
    assert _subjects(srv) == ["held back"]
    with pytest.raises(CliError) as err:
        srv.cli("quarantine", "release", "999")
    assert "no quarantined copy 999" in err.value.stderr


def test_the_quarantine_is_bounded_per_user(serve) -> None:
    srv = serve(auth={"unverified": "quarantine"}, retention={"quarantine_max_per_user": 2})
    assert _send_from(srv, ALT, "1")[0] == 250
    assert _send_from(srv, "a2@home.test", "2")[0] == 250
    code, text = _send_from(srv, ALT, "3")
    assert code == 550 and text.startswith(b"5.7.1") and b"quarantine is full" in text
    assert len(srv.cli("quarantine", "list", "alice@acme.test")) == 2
    [rej] = srv.cli("rejections", "list", "alice@acme.test")
    assert "quarantine is full" in rej["reason"]
    # released copies no longer count
    srv.cli("quarantine", "release", str(srv.cli("quarantine", "list", "alice@acme.test")[0]["id"]))
    assert _send_from(srv, ALT, "3")[0] == 250


def test_copies_from_another_users_login_address_are_refused_not_quarantined(serve, capture) -> None:
    srv = serve(**QUARANTINE)
    srv.setup_user("bob@acme.test", name="Bob")
    code, text = _send_from(srv, "bob@acme.test", "from bob")
    assert code == 550 and text.startswith(b"5.7.1")
    assert srv.cli("quarantine", "list", "alice@acme.test") == []
    assert capture.settle(1.0) == []


def test_old_quarantined_copies_are_purged(serve) -> None:
    srv = serve(**QUARANTINE)
    assert _send_from(srv, ALT, "old")[0] == 250
    db = Database(f"sqlite:///{srv.dir / 'var' / 'bccd.sqlite3'}")
    try:
        assert quarantine.purge_expired(db, 3600) == 0
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert quarantine.purge_expired(db, 3600, now=later) == 1
    finally:
        db.dispose()
    assert srv.cli("quarantine", "list", "alice@acme.test") == []


def test_reject_mode_refusal_tells_how_to_add_the_address(serve, capture) -> None:
    srv = serve()
    code, text = _send_from(srv, ALT, "refused")
    assert code == 550 and text.startswith(b"5.7.1")
    assert b"bccd alt add" in text and b"settings" in text and ALT.encode() in text
    assert srv.cli("quarantine", "list", "alice@acme.test") == []
    assert srv.cli("alt", "list", "alice@acme.test") == []
    assert capture.settle(1.0) == []


@pytest.mark.pg
def test_quarantine_confirm_and_release_on_postgresql(make_server, capture: CaptureSmtp, pg_url: str) -> None:
    srv = make_server({"outbound": {"port": capture.port}, **QUARANTINE}, database_url=pg_url,
                      start=False)
    srv.cli("db", "upgrade")
    srv.start()
    srv.alice = srv.setup_user()
    for subject in ("pg one", "pg two"):
        assert _send_from(srv, ALT, subject)[0] == 250
    capture.wait_for(1)  # the notice
    link = _confirmation_to(srv, capture, ALT)
    with httpx.Client(timeout=10) as http:
        assert http.get(link).status_code == 200
        assert http.post(link, data={"token": token_of(link)}).status_code == 200
        assert http.post(link, data={"token": token_of(link)}).status_code == 410
    wait_until(lambda: _subjects(srv) == ["pg one", "pg two"])
    assert {q["status"] for q in srv.cli("quarantine", "list", "alice@acme.test")} == {"released"}
    assert len(capture.settle(1.0)) == 2  # the notice and the confirmation
