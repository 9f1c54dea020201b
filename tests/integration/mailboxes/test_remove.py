"""Removing a mailbox (SPEC §7): the sync stops at once and cleanly (a sync in flight
ends, nothing logs an error), the mail stays unless asked, and ``delete_mail`` deletes
only mail that came from that mailbox alone — from the API and from the CLI."""

from __future__ import annotations

import pytest

from tests.integration.mailboxes.conftest import api, message
from tests.support.dovecot import Dovecot
from tests.support.server import BccdServer, CliError
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("7")

_n = iter(range(1, 10_000))


def _threads(site: BccdServer, token: str) -> int:
    with api(site, token) as c:
        return len(c.get("/threads", params={"limit": 200}).json()["threads"])


@pytest.mark.parametrize("delete_mail", [False, True])
def test_removing_a_mailbox_mid_sync_stops_it_cleanly_and_keeps_or_deletes_its_mail(
        site: BccdServer, dovecot: Dovecot, delete_mail: bool) -> None:
    token = site.users["alice"]["api_token"]  # type: ignore[attr-defined]
    login = dovecot.add_user(f"rm{next(_n)}@mail.test", "pw")
    for i in range(60):
        dovecot.append(login, message(i))
    with api(site, token) as c:
        box = c.post("/me/mailboxes", json={"provider": "other", "host": "127.0.0.1",
                                            "port": dovecot.ssl_port, "email": login,
                                            "password": "pw"}).json()
        wait_until(lambda: 0 < c.get(f"/me/mailboxes/{box['id']}").json()["messages_synced"],
                   what="the initial sync under way", timeout=30)
        r = c.delete(f"/me/mailboxes/{box['id']}", params={"delete_mail": str(delete_mail).lower()})
        assert r.status_code == 200, r.text
        assert c.get(f"/me/mailboxes/{box['id']}").status_code == 404
    kept = _threads(site, token)
    if delete_mail:
        assert kept == 0 and r.json()["messages_deleted"] > 0
    else:
        assert 0 < kept < 60 and r.json()["messages_deleted"] == 0
    events = [e for e in site.log_events() if e.get("account") == box["id"]]
    assert any(e["event"] == "imap_account_stopped" for e in events)
    assert not [e for e in events if e.get("level") in ("error", "warning")], events
    assert not [e for e in site.log_events() if e.get("level") == "error"]
    assert _threads(site, token) == kept  # nothing more arrives after the removal


def test_imap_remove_on_the_command_line(site: BccdServer, dovecot: Dovecot) -> None:
    token = site.users["alice"]["api_token"]  # type: ignore[attr-defined]
    login = dovecot.add_user(f"cli{next(_n)}@mail.test", "pw")
    dovecot.append(login, message(1))
    with api(site, token) as c:
        box = c.post("/me/mailboxes", json={"provider": "other", "host": "127.0.0.1",
                                            "port": dovecot.ssl_port, "email": login,
                                            "password": "pw"}).json()
        wait_until(lambda: c.get(f"/me/mailboxes/{box['id']}").json()["initial_sync_done_at"],
                   what="the initial sync", timeout=30)
    assert site.cli("imap", "remove", str(box["id"]), "--delete-mail") == {
        "id": box["id"], "removed": True, "messages_deleted": 1}
    assert site.cli("imap", "list") == []
    with pytest.raises(CliError) as err:
        site.cli("imap", "remove", str(box["id"]))
    assert err.value.code == 1 and f"no IMAP account {box['id']}" in err.value.stderr
