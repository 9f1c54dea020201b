"""SPEC §8 ``user disable`` / ``user delete`` / ``company delete``, on SQLite and
PostgreSQL: real ``bccd serve``, real SMTP, the CLI in-process; "nothing left" is checked
over every table of the schema."""

from __future__ import annotations

import smtplib
import uuid

import pytest

from bccd import accounts
from bccd.lifecycle import offboard
from bccd.store.db import Database
from tests.integration.lifecycle.helpers import (
    World,
    blob_exists,
    mail,
    rows_mentioning,
    rows_referencing,
)
from tests.support.mail import make_message, send
from tests.support.server import BccdServer, CliError, free_port

pytestmark = pytest.mark.spec("8")


def _imap_add(srv: BccdServer, email: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("LC_IMAP_PASSWORD", "secret")
    return int(srv.cli("imap", "add", email, "--host", "127.0.0.1", "--port", str(free_port()),
                       "--security", "ssl", "--username", email,
                       "--password-env", "LC_IMAP_PASSWORD")["id"])


def _shas(srv: BccdServer, email: str) -> set[str]:
    out = set()
    for t in srv.cli("mail", "list", email):
        for m in srv.cli("mail", "show", str(t["thread_id"]))["messages"]:
            out |= {a["sha256"] for a in m["attachments"]}
    return out


def _listing(srv: BccdServer, email: str) -> list[dict]:
    return [srv.cli("mail", "show", str(t["thread_id"])) for t in srv.cli("mail", "list", email)]


def _alice_with_a_deal(srv: BccdServer, name: str) -> tuple[dict, str, dict, str]:
    """A user alice, a client bob, a deal with him: (alice, bob, deal, alice's From)."""
    w = World(srv, name)
    alice = w.user("alice")
    bob = f"bob@client-{w.slug}.test"
    return alice, bob, w.deal("Renewal", w.person("Bob", bob)), f"Alice <{alice['email']}>"


def test_a_disabled_user_gets_550_5_1_1_on_their_own_and_on_a_pinned_address(
        lc_srv: BccdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = lc_srv
    alice, bob, deal, frm = _alice_with_a_deal(srv, "disable")
    assert mail(srv, alice["bcc_address"], frm=frm, to=bob, subject="before") == 250
    assert mail(srv, deal["bcc_address"], frm=frm, to=bob, subject="pinned before") == 250
    account = _imap_add(srv, alice["email"], monkeypatch)

    out = srv.cli("user", "disable", alice["email"])
    assert out == {"email": alice["email"], "disabled": True, "imap_accounts_disabled": 1}

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        mail(srv, alice["bcc_address"], frm=frm, to=bob, subject="after")
    code, text = refused.value.recipients[alice["bcc_address"]]
    assert (code, text.split()[0]) == (550, b"5.1.1")
    raw = make_message(frm=frm, to=bob, subject="pinned after")
    code, text = send(srv.smtp_port, deal["bcc_address"], raw, mail_from=alice["email"])
    assert (code, text.split()[0]) == (550, b"5.1.1")
    assert b"disabled" not in text  # the peer learns nothing about the account
    [acct] = [a for a in srv.cli("imap", "list") if a["id"] == account]
    assert acct["state"] == "disabled"
    assert sorted(t["subject"] for t in srv.cli("mail", "list", alice["email"])) == [
        "before", "pinned before"]


def test_a_disabled_users_api_token_stops_working(function_db: Database) -> None:
    with function_db.transaction() as s:
        company = accounts.create_company(s, "Acme", "acme")
        token = accounts.create_user(s, "alice@acme.test", company).api_token
    with function_db.transaction() as s:
        user = accounts.user_by_api_token(s, token)
        assert user is not None and user.email == "alice@acme.test"
        offboard.disable_user(s, user)
    with function_db.read() as s:
        assert accounts.user_by_api_token(s, token) is None


def test_an_enabled_user_gets_mail_again_and_their_imap_accounts_back(
        lc_srv: BccdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = lc_srv
    alice, bob, deal, frm = _alice_with_a_deal(srv, "enable")
    account = _imap_add(srv, alice["email"], monkeypatch)
    srv.cli("user", "disable", alice["email"])
    assert mail(srv, deal["bcc_address"], frm=frm, to=bob, subject="while disabled") == 550

    out = srv.cli("user", "enable", alice["email"])
    assert out["email"] == alice["email"] and out["disabled"] is False
    assert out["imap_accounts_enabled"] == 1
    assert out["api_token"].startswith("bccd_") and out["api_token"] != alice["api_token"]
    assert mail(srv, alice["bcc_address"], frm=frm, to=bob, subject="back") == 250
    assert mail(srv, deal["bcc_address"], frm=frm, to=bob, subject="pinned back") == 250
    [acct] = [a for a in srv.cli("imap", "list") if a["id"] == account]
    assert acct["state"] == "active"
    assert sorted(t["subject"] for t in srv.cli("mail", "list", alice["email"])) == [
        "back", "pinned back"]
    assert srv.cli("user", "show", alice["email"])["disabled"] is False


def test_enabling_a_user_who_is_not_disabled_is_an_error_and_keeps_their_token(
        lc_srv: BccdServer) -> None:
    w = World(lc_srv, "enable-active")
    alice = w.user("alice")
    with pytest.raises(CliError) as err:
        lc_srv.cli("user", "enable", alice["email"])
    assert err.value.code == 1 and f"user {alice['email']} is not disabled" in err.value.stderr
    with pytest.raises(CliError) as err:
        lc_srv.cli("user", "enable", f"nobody@{w.slug}.test")
    assert err.value.code == 1 and "no user" in err.value.stderr


def test_enabling_gives_a_new_api_token_the_old_one_stays_dead(function_db: Database) -> None:
    """A token that leaked while the user was away (or with the person who left) must
    not come back to life: enabling issues a new one, shown once."""
    from sqlalchemy import update

    from bccd.crypto import SecretBox
    from bccd.mailboxes import accounts as imap_accounts
    from bccd.store.models import ImapAccount

    with function_db.transaction() as s:
        company = accounts.create_company(s, "Acme", "acme")
        old = accounts.create_user(s, "alice@acme.test", company).api_token
        imap = imap_accounts.add_account(
            s, SecretBox(["k"]), user_email="alice@acme.test", host="imap.example",
            username="alice", auth=imap_accounts.PasswordAuth("pw")).id
    with function_db.transaction() as s:
        offboard.disable_user(s, accounts.get_user(s, "alice@acme.test"))
        # a late sync outcome under an older version cleared the reason: still resumed
        s.execute(update(ImapAccount).where(ImapAccount.id == imap).values(state_reason=""))
    with function_db.transaction() as s:
        out = offboard.enable_user(s, accounts.get_user(s, "alice@acme.test"))
    assert out["imap_accounts_enabled"] == 1
    with function_db.read() as s:
        assert accounts.user_by_api_token(s, old) is None
        user = accounts.user_by_api_token(s, out["api_token"])
        assert user is not None and user.email == "alice@acme.test"
        assert imap_accounts.syncable_account_ids(s) == [imap]


def test_deleting_a_user_leaves_nothing_of_them_and_keeps_their_colleagues_mail(
        lc_srv: BccdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = lc_srv
    w = World(srv, "deluser")
    alice, bob = w.user("alice"), w.user("bob")
    carol = f"carol@client-{w.slug}.test"
    deal = w.deal("Renewal", w.person("Carol", carol))
    shared = ("shared.pdf", "application/pdf", b"shared " + uuid.uuid4().bytes)
    own = ("own.pdf", "application/pdf", b"alice only " + uuid.uuid4().bytes)
    frm = f"Alice <{alice['email']}>"
    home = f"alice@home-{w.slug}.test"
    second = f"alice2@home-{w.slug}.test"
    assert mail(srv, alice["bcc_address"], frm=frm, to=carol, subject="quote",
                attachments=[own, shared]) == 250
    assert mail(srv, deal["bcc_address"], frm=frm, to=carol, subject="pinned") == 250
    assert mail(srv, bob["bcc_address"], frm=f"Bob <{bob['email']}>", to=carol,
                subject="bob's", attachments=[shared]) == 250
    # a quarantined copy (→ pending alternate, notice, notice mail in the outbox), a
    # refused one, a blocked address, an alternate being confirmed, an IMAP account
    assert mail(srv, alice["bcc_address"], frm=home, to=carol, subject="held") == 250
    assert mail(srv, alice["bcc_address"], frm=f'"ceo@evil.test" <{alice["email"]}>', to=carol,
                subject="refused") == 550
    srv.cli("block", "add", alice["email"], f"spam@client-{w.slug}.test")
    srv.cli("alt", "add", alice["email"], second)
    _imap_add(srv, alice["email"], monkeypatch)
    alice_shas = _shas(srv, alice["email"])
    bob_before = _listing(srv, bob["email"])
    assert len(alice_shas) == 2

    # disabled first: the pinned address now refuses her (a user-less rejection naming her)
    srv.cli("user", "disable", alice["email"])
    raw = make_message(frm=frm, to=carol, subject="late")
    assert send(srv.smtp_port, deal["bcc_address"], raw, mail_from=alice["email"])[0] == 550

    dry = srv.cli("user", "delete", alice["email"], "--dry-run")
    assert dry["dry_run"] is True
    assert srv.cli("user", "show", alice["email"])["email"] == alice["email"]
    out = srv.cli("user", "delete", alice["email"])
    assert out["removed"] == dry["removed"]
    removed = out["removed"]
    assert removed["users"] == 1 and removed["threads"] == 2 and removed["messages"] == 2
    assert removed["attachments"] == 2 and removed["quarantine"] == 1
    assert removed["imap_accounts"] == 1 and removed["alternates"] == 2
    assert removed["blocked"] == 1 and removed["rejections"] == 2 and removed["outbox"] >= 1
    assert out["blobs"] == {"candidates": 2, "deleted": 1, "freed_bytes": len(own[2]),
                            "still_referenced": 1, "deferred": 0}

    assert rows_referencing(srv, "users.id", [alice["id"]]) == []
    token = alice["bcc_address"].split("+", 1)[1].split("@")[0]
    assert rows_mentioning(srv, [alice["email"], token, home, second]) == []
    with pytest.raises(CliError, match="no user"):
        srv.cli("user", "show", alice["email"])
    assert _listing(srv, bob["email"]) == bob_before
    [shared_sha] = _shas(srv, bob["email"])
    assert blob_exists(srv, shared_sha)
    assert not blob_exists(srv, (alice_shas - {shared_sha}).pop())


def test_deleting_a_company_removes_everything_it_holds_and_nothing_of_another(
        lc_srv: BccdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = lc_srv
    gone, stays = World(srv, "gone"), World(srv, "stays")
    alice, dave = gone.user("alice"), stays.user("dave")
    carol = f"carol@client-{uuid.uuid4().hex[:8]}.test"  # a customer of both companies
    deal = gone.deal("Renewal", gone.person("Carol", carol))
    shared = ("shared.pdf", "application/pdf", b"shared " + uuid.uuid4().bytes)
    own = ("own.pdf", "application/pdf", b"gone only " + uuid.uuid4().bytes)
    assert mail(srv, alice["bcc_address"], frm=alice["email"], to=carol, subject="quote",
                attachments=[own, shared]) == 250
    assert mail(srv, deal["bcc_address"], frm=alice["email"], to=carol, subject="pinned") == 250
    assert mail(srv, deal["bcc_address"], frm=carol, to=alice["email"], subject="no") == 550
    assert mail(srv, alice["bcc_address"], frm=f"alice@home-{gone.slug}.test", to=carol,
                subject="held") == 250
    _imap_add(srv, alice["email"], monkeypatch)
    assert mail(srv, dave["bcc_address"], frm=dave["email"], to=carol, subject="other company",
                attachments=[shared]) == 250
    gone_shas = _shas(srv, alice["email"])
    dave_before = _listing(srv, dave["email"])
    [company_id] = [c["id"] for c in srv.cli("company", "list") if c["slug"] == gone.slug]

    out = srv.cli("company", "delete", gone.slug)
    removed = out["removed"]
    assert removed["companies"] == 1 and removed["users"] == 1 and removed["persons"] == 1
    assert removed["items"] == 1 and removed["messages"] == 2 and removed["quarantine"] == 1
    assert removed["rejections"] == 1 and removed["imap_accounts"] == 1
    assert out["blobs"]["deleted"] == 1 and out["blobs"]["still_referenced"] == 1

    assert rows_referencing(srv, "companies.id", [company_id]) == []
    assert rows_referencing(srv, "users.id", [alice["id"]]) == []
    assert rows_mentioning(srv, [gone.slug, gone.domain]) == []
    with pytest.raises(CliError, match="no company"):
        srv.cli("user", "list", "--company", gone.slug)
    assert _listing(srv, dave["email"]) == dave_before
    [shared_sha] = _shas(srv, dave["email"])
    assert blob_exists(srv, shared_sha)
    assert not blob_exists(srv, (gone_shas - {shared_sha}).pop())
