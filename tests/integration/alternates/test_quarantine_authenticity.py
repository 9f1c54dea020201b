"""SPEC §4.4 with `auth.mode = dmarc`: only copies that pass DMARC for their own domain
are quarantined; copies that fail are refused (5.7.26), never kept, never answered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dnsserver import DnsTestServer
from tests.support.mail import make_message, send

pytestmark = pytest.mark.spec("4.4")


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        # home.test authorises the test client (127.0.0.1): SPF pass, aligned → DMARC pass
        server.add_txt("home.test", "v=spf1 ip4:127.0.0.1 -all")
        server.add_txt("_dmarc.home.test", "v=DMARC1; p=reject")
        # evil.test authorises nobody: DMARC fail
        server.add_txt("evil.test", "v=spf1 -all")
        server.add_txt("_dmarc.evil.test", "v=DMARC1; p=reject")
        yield server


def test_only_authentic_copies_are_quarantined_and_failures_get_no_notice(
        serve, capture: CaptureSmtp, dns: DnsTestServer) -> None:
    srv = serve(auth={"mode": "dmarc", "unverified": "quarantine"},
                dns={"nameservers": ["127.0.0.1"], "port": dns.port})
    good = make_message(frm="Alice <alice@home.test>", subject="authentic")
    assert send(srv.smtp_port, srv.alice["bcc_address"], good, mail_from="alice@home.test")[0] == 250
    bad = make_message(frm="Alice <alice@evil.test>", subject="forged")
    code, text = send(srv.smtp_port, srv.alice["bcc_address"], bad, mail_from="alice@evil.test")
    assert code == 550 and text.startswith(b"5.7.26")
    [held] = srv.cli("quarantine", "list", "alice@acme.test")
    assert (held["from"], held["subject"]) == ("alice@home.test", "authentic")
    [rej] = srv.cli("rejections", "list", "alice@acme.test")
    assert rej["code"] == "550 5.7.26" and rej["auth"]["dmarc"] == "fail"
    # one notice, about the authentic address only; nothing goes to the forged one
    [notice] = capture.wait_for(1)
    assert notice.rcpt_tos == ["alice@acme.test"] and "alice@home.test" in notice.message()["Subject"]
    assert "/confirm/" not in notice.message().as_string()  # confirming is the address's own
    assert len(capture.settle(1.2)) == 1
    assert [a["email"] for a in srv.cli("alt", "list", "alice@acme.test")] == ["alice@home.test"]
