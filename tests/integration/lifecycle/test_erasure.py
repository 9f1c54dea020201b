"""SPEC §8 ``erase ADDRESS [--all-companies]`` (right to erasure), on SQLite and
PostgreSQL: the address ends up nowhere in the database, other mail is intact, blobs
only its messages used are deleted and blobs other messages use are kept."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.lifecycle.helpers import World, blob_exists, mail, rows_mentioning
from tests.support.server import BccdServer, CliError

pytestmark = pytest.mark.spec("8")


def _threads(srv: BccdServer, email: str) -> list[dict]:
    return [srv.cli("mail", "show", str(t["thread_id"])) for t in srv.cli("mail", "list", email)]


def _sha(srv: BccdServer, email: str, filename: str) -> str:
    return next(a["sha256"] for t in _threads(srv, email) for m in t["messages"]
                for a in m["attachments"] if a["filename"] == filename)


def test_erasing_an_address_removes_it_everywhere_and_keeps_other_mail(lc_srv: BccdServer) -> None:
    srv = lc_srv
    acme, globex = World(srv, "erase-a"), World(srv, "erase-b")
    alice, gina = acme.user("alice"), globex.user("gina")
    client = f"client-{uuid.uuid4().hex[:8]}.test"
    carol, private, dave = f"carol@{client}", f"carol.private@{client}", f"dave@{client}"
    deal = acme.deal("Renewal", acme.person("Carol", carol, private))
    only_carol = ("carol.pdf", "application/pdf", b"carol's file " + uuid.uuid4().bytes)
    shared = ("terms.pdf", "application/pdf", b"terms " + uuid.uuid4().bytes)
    a = alice["email"]
    assert mail(srv, alice["bcc_address"], frm=a, to=carol, subject="to carol",
                attachments=[only_carol, shared]) == 250
    assert mail(srv, alice["bcc_address"], frm=a, to=dave, cc=carol, subject="cc carol") == 250
    first = f"<{uuid.uuid4().hex}@acme.test>"
    assert mail(srv, alice["bcc_address"], frm=a, to=dave, subject="to dave", message_id=first,
                attachments=[shared]) == 250
    assert mail(srv, alice["bcc_address"], frm=a, to=dave, cc=carol, subject="Re: to dave",
                in_reply_to=first) == 250
    # carol's own traces: a quarantined copy from her (→ pending alternate, notice, notice
    # mail in the outbox), a refused copy to the pinned deal address, a blocked entry
    assert mail(srv, alice["bcc_address"], frm=carol, to=a, subject="from carol") == 250
    assert mail(srv, deal["bcc_address"], frm=carol, to=a, subject="to the deal") == 550
    srv.cli("block", "add", a, carol)
    # another company holds carol's mail too, with the same file
    assert mail(srv, gina["bcc_address"], frm=gina["email"], to=carol, subject="globex",
                attachments=[only_carol]) == 250
    carol_sha, shared_sha = _sha(srv, a, "carol.pdf"), _sha(srv, a, "terms.pdf")

    with pytest.raises(CliError) as usage:
        srv.cli("erase", carol)
    assert usage.value.code == 2
    with pytest.raises(CliError, match="user delete"):
        srv.cli("erase", a, "--company", acme.slug)

    out = srv.cli("erase", carol.upper(), "--company", acme.slug)
    removed = out["removed"]
    assert removed["messages"] == 3 and removed["threads"] == 2 and removed["attachments"] == 2
    assert removed["persons"] == 1 and removed["person_emails"] == 2
    assert removed["quarantine"] == 1 and removed["rejections"] == 1 and removed["notices"] == 1
    assert removed["alternates"] == 1 and removed["blocked"] == 1 and removed["outbox"] >= 1
    # both blobs are still used: by the mail to dave, and by the other company's copy
    assert out["blobs"] == {"candidates": 2, "deleted": 0, "freed_bytes": 0,
                            "still_referenced": 2, "deferred": 0}
    [kept] = _threads(srv, a)
    assert kept["subject"] == "to dave" and len(kept["messages"]) == 1
    assert kept["messages"][0]["to"] == [dave] and kept["messages"][0]["cc"] == []
    assert srv.cli("quarantine", "list", a) == [] and srv.cli("rejections", "list", a) == []
    assert srv.cli("user", "show", a)["alternates"] == [] and srv.cli("user", "show", a)["blocked"] == []
    assert [p["emails"] for p in srv.cli("person", "list", "--company", acme.slug)] == [[dave]]
    assert srv.cli("deal", "list", "--company", acme.slug)[0]["person_id"] is None
    assert [t["subject"] for t in _threads(srv, gina["email"])] == ["globex"]
    assert blob_exists(srv, carol_sha) and blob_exists(srv, shared_sha)

    out = srv.cli("erase", carol, "--all-companies")
    assert out["removed"]["messages"] == 1
    assert out["blobs"]["deleted"] == 1 and out["blobs"]["freed_bytes"] == len(only_carol[2])
    assert rows_mentioning(srv, [carol, private]) == []
    assert not blob_exists(srv, carol_sha) and blob_exists(srv, shared_sha)
    assert _threads(srv, gina["email"]) == []
    assert [t["subject"] for t in _threads(srv, a)] == ["to dave"]
