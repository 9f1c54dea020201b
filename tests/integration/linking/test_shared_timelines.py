"""SPEC §5.14 on SQLite and PostgreSQL: when colleagues filed the same message (same
Message-ID) each keeps their copy, but an entity's timeline — ``mail list --deal`` /
``--person`` / ``--organization``, ``GET /api/v1/threads?deal=``, the Mail page filter —
shows it once to a viewer who may see several copies: the viewer's own, else the earliest
filed, with ``also_filed_by`` naming the other owners the viewer may see. Two and three
colleagues with every mix of private and shared copies, viewed by each of them, by a
colleague who filed nothing and by an admin; a conversation that only partly overlaps;
paging and counts; and copies that came by Smart Bcc and by IMAP."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.linking_world import Tenant
from tests.support.mail import make_message
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("5.14")

PAT = "pat@client.test"
VIEWERS = ("alice", "bea", "cai", "dan", "root")


def world(srv: BccdServer, label: str, sharing: dict[str, str]) -> Tenant:
    """alice, bea, cai (who may file), dan (files nothing), root (admin); Pat of Client Co
    with one open deal, so every copy is linked to Pat, Client Co and the deal."""
    t = Tenant(srv, label)
    t.company_set("off")
    for local in ("bea", "cai", "dan"):
        t.user(local)
    t.user("root", admin=True)
    for local, value in sharing.items():
        t.set_user(local, sharing=value)
    t.person("Pat", PAT, org="Client Co")
    t.ids["Client Co"], t.kinds["Client Co"] = t.persons()[PAT]["organization_id"], "organization"
    t.item("deal", "Deal", "Pat")
    return t


def original(t: Tenant, tag: str, *, to: tuple[str, ...] = ("alice", "bea", "cai"),
             in_reply_to: str | None = None) -> bytes:
    return make_message(frm=f"Pat <{PAT}>", to=", ".join(f"{u}@{t.domain}" for u in to),
                        subject=f"Offer {tag}", message_id=f"<{tag}@client.test>",
                        in_reply_to=in_reply_to, references=in_reply_to)


def timeline(t: Tenant, viewer: str, kind: str = "deal", name: str = "Deal") -> list[dict]:
    return t.threads(viewer, f"--{kind}", str(t.ids[name]))


@dataclass
class Mix:
    filers: tuple[str, ...]          # in filing order
    sharing: dict[str, str]

    @property
    def id(self) -> str:
        return "-".join(f"{u}:{self.sharing[u][:2]}" for u in self.filers)


MIXES = [Mix(("alice", "bea"), dict(zip(("alice", "bea"), v, strict=True)))
         for v in itertools.product(("private", "shared"), repeat=2)]
MIXES += [Mix(("alice", "bea", "cai"), dict(zip(("alice", "bea", "cai"), v, strict=True)))
          for v in itertools.product(("private", "shared"), repeat=3)]
MIXES.append(Mix(("cai", "alice", "bea"), {"cai": "shared", "alice": "private", "bea": "shared"}))


def expected(mix: Mix, viewer: str, emails: dict[str, str]) -> tuple[str, list[str]] | None:
    """(whose copy the viewer is shown, also_filed_by) — or None: no copy to see. A
    shared copy is visible to colleagues (its links, Pat, Client Co and the deal, are
    visible to the company); a private one to its owner only, admins included."""
    visible = [u for u in mix.filers if u == viewer or mix.sharing[u] == "shared"]
    if not visible:
        return None
    shown = viewer if viewer in visible else visible[0]  # own, else the earliest filed
    return shown, sorted(emails[u] for u in visible if u != shown)


@pytest.mark.parametrize("mix", MIXES, ids=[m.id for m in MIXES])
def test_a_message_several_colleagues_filed_is_shown_once_per_viewer(
        srv: BccdServer, mix: Mix) -> None:
    t = world(srv, "tl-" + mix.id[:10], mix.sharing)
    raw = original(t, "m1")
    for local in mix.filers:
        assert t.forward(local, raw)[0] == 250
    emails = {u: t.users[u]["email"] for u in VIEWERS}
    timelines = [("deal", "Deal")]
    if len(mix.filers) == 3:
        timelines += [("person", "Pat"), ("organization", "Client Co")]
    for viewer in VIEWERS:
        want = expected(mix, viewer, emails)
        for kind, name in timelines:
            rows = timeline(t, viewer, kind, name)
            if want is None:
                assert rows == [], (viewer, kind)
                continue
            [row] = rows
            assert (row["owner"], row["also_filed_by"], row["messages"]) == (
                emails[want[0]], want[1], 1), (viewer, kind)
            assert row["subject"] == "Offer m1" and row["link_state"] == "linked"
        # the viewer's own mailbox is not a timeline: every copy they may see is listed
        everything = t.threads(viewer)
        visible = [u for u in mix.filers if u == viewer or mix.sharing[u] == "shared"]
        assert sorted(r["owner"] for r in everything) == sorted(emails[u] for u in visible)
        assert all(r["also_filed_by"] == [] for r in everything)


def test_a_conversation_that_partly_overlaps_shows_each_message_once_and_pages_exactly(
        srv: BccdServer) -> None:
    sharing = {"alice": "shared", "bea": "shared", "cai": "shared"}
    t = world(srv, "tl-partial", sharing)
    m1 = original(t, "p1")
    t.forward("alice", m1)
    t.forward("bea", m1)
    t.forward("alice", original(t, "p2", to=("alice",), in_reply_to="<p1@client.test>"))
    t.forward("cai", original(t, "p3", to=("cai",)))
    emails = {u: t.users[u]["email"] for u in VIEWERS}

    def rows(viewer: str) -> dict[str, tuple[int, list[str]]]:
        return {r["owner"]: (r["messages"], r["also_filed_by"]) for r in timeline(t, viewer)}

    # dan filed nothing: alice's thread holds p1 (the earliest copy) and p2; bea's only
    # copy is shown through alice's, so her thread is not listed
    assert rows("dan") == {emails["alice"]: (2, [emails["bea"]]), emails["cai"]: (1, [])}
    # bea sees her own copy of p1, and alice's thread for p2 alone
    assert rows("bea") == {emails["bea"]: (1, [emails["alice"]]), emails["alice"]: (1, []),
                           emails["cai"]: (1, [])}
    assert rows("alice") == {emails["alice"]: (2, [emails["bea"]]), emails["cai"]: (1, [])}
    # the thread itself still holds both of alice's messages
    mine = next(r for r in t.threads("alice") if r["owner"] == emails["alice"])
    assert mine["messages"] == 2

    with t.api("bea") as api:  # paging one row at a time: each row once, nothing missed
        full = api.get("/threads", params={"deal": t.ids["Deal"]}).json()["threads"]
        assert len(full) == 3 and sum(r["messages"] for r in full) == 3  # p1, p2, p3
        seen, offset = [], 0
        while offset is not None:
            page = api.get("/threads", params={"deal": t.ids["Deal"], "limit": 1,
                                                "offset": offset}).json()
            assert len(page["threads"]) == 1
            seen += page["threads"]
            offset = page["next_offset"]
        assert [r["thread_id"] for r in seen] == [r["thread_id"] for r in full]
        assert [(r["messages"], r["also_filed_by"]) for r in seen] == [
            (r["messages"], r["also_filed_by"]) for r in full]
        last = api.get("/threads", params={"deal": t.ids["Deal"], "offset": 3}).json()
        assert last["threads"] == [] and last["next_offset"] is None


@pytest.fixture(scope="module")
def dovecot() -> Any:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    with Dovecot() as server:
        yield server


def test_a_smart_bcc_copy_and_a_colleagues_synced_copy_are_one_message_on_the_timeline(
        srv: BccdServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice writes to Pat with bea in Cc and her Smart Bcc address in Bcc; bea's copy
    arrives by syncing her mailbox. dan sees the conversation once on the deal."""
    t = world(srv, "tl-imap", {"alice": "shared", "bea": "shared"})
    raw = make_message(frm=f"Alice <alice@{t.domain}>", to=f"Pat <{PAT}>",
                       cc=f"Bea <bea@{t.domain}>", subject="Proposal",
                       message_id="<proposal@acme.test>")
    assert t.send(raw)[0] == 250
    imap_user = dovecot.add_user(f"bea-{os.getpid()}-{t.slug[-6:]}", "bea-Pa55word")
    dovecot.append(imap_user, raw)
    monkeypatch.setenv("BEA_IMAP_PW", "bea-Pa55word")
    account = srv.cli("imap", "add", t.users["bea"]["email"], "--host", "127.0.0.1",
                      "--port", str(dovecot.port), "--security", "starttls",
                      "--username", imap_user, "--password-env", "BEA_IMAP_PW",
                      "--ca-file", dovecot.ca_file, "--folders", "INBOX")
    srv.cli("imap", "sync", "--account", str(account["id"]), "--once")
    deadline = time.monotonic() + 60  # the server's own poller may have taken the account
    while not t.threads("bea") and time.monotonic() < deadline:
        time.sleep(0.2)
    [bea_copy] = t.threads("bea", "--deal", str(t.ids["Deal"]))
    assert bea_copy["owner"] == t.users["bea"]["email"]
    assert bea_copy["also_filed_by"] == [t.alice["email"]]
    [row] = timeline(t, "dan")
    assert (row["owner"], row["also_filed_by"], row["messages"]) == (
        t.alice["email"], [t.users["bea"]["email"]], 1)
    [msg] = t.show(row["thread_id"])["messages"]
    assert msg["message_id"] == "proposal@acme.test" and msg["sources"] == ["bcc"]
