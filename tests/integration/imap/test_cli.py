"""``bccd imap add|list|sync --once`` end to end against Dovecot (in-process CLI)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bccd.cli import main
from tests.integration.imap.helpers import RecordingSink, make_message
from tests.support.dovecot import Dovecot

pytestmark = [pytest.mark.spec("7"), pytest.mark.spec("8")]

BOB = "Bob Client <bob@client.test>"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    conf = tmp_path / "bccd.toml"
    conf.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        '[security]\nsecret_key = "cli-test-key"\n'
        '[auth]\nmode = "off"\n'
        "[imap]\nbatch_size = 2\n"
    )
    if os.environ.get("BCCD_TEST_IMAP_SINK") == "fake":
        import bccd.cli.imap as cli_imap

        monkeypatch.setattr(cli_imap, "_sink", lambda ctx: RecordingSink(ctx.database()))

    def run(*argv: str) -> tuple[int, Any, str]:
        try:
            code = main(["--config", str(conf), *argv])
        except SystemExit as exc:  # usage errors exit from argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        try:
            data = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            data = out
        return code, data, err

    run.data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    return run


def alice(cli: Any, monkeypatch: pytest.MonkeyPatch, password: str = "pw") -> None:
    """Company Acme and its user alice@acme.test; ``IMAP_PW`` holds ``password``."""
    assert cli("company", "create", "Acme", "--slug", "acme", "--json")[0] == 0
    assert cli("user", "create", "alice@acme.test", "--company", "acme", "--json")[0] == 0
    monkeypatch.setenv("IMAP_PW", password)


def alice_mailbox(cli: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, name: str,
                  messages: int) -> str:
    """``alice`` and a Dovecot user ``<name>-user`` (password in ``IMAP_PW``) holding
    ``messages`` messages from Bob; the Dovecot user."""
    password = f"{name}-Pa55word"
    alice(cli, monkeypatch, password)
    user = dovecot.add_user(f"{name}-user", password)
    for i in range(messages):
        dovecot.append(user, make_message(BOB, "alice@acme.test", message_id=f"<{name}{i}@x.test>"))
    return user


def test_add_list_sync_once(cli: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    user = alice_mailbox(cli, dovecot, monkeypatch, "cli", 3)
    monkeypatch.setenv("BAD_PW", "not-the-password")

    code, data, err = cli(
        "imap",
        "add",
        "alice@acme.test",
        "--host",
        "127.0.0.1",
        "--port",
        str(dovecot.port),
        "--security",
        "starttls",
        "--username",
        user,
        "--password-env",
        "IMAP_PW",
        "--ca-file",
        dovecot.ca_file,
        "--folders",
        "INBOX,\\Sent",
        "--on-archive",
        "archive",
        "--json",
    )
    assert (code, data) == (0, {"id": 1}), err
    code, data, err = cli(
        "imap",
        "add",
        "alice@acme.test",
        "--host",
        "127.0.0.1",
        "--port",
        str(dovecot.ssl_port),
        "--username",
        user,
        "--password-env",
        "BAD_PW",
        "--ca-file",
        dovecot.ca_file,
        "--json",
    )
    assert (code, data) == (0, {"id": 2}), err

    code, data, err = cli("imap", "sync", "--once", "--json")
    assert code == 1
    assert err.count("bccd: error: account 2: login to 127.0.0.1:") == 1
    by_id = {r["account"]: r for r in data}
    assert by_id[1]["ok"] is True and by_id[1]["stored"] == 3
    assert by_id[2]["ok"] is False and "refused" in by_id[2]["error"]

    code, data, _ = cli("imap", "list", "--json")
    assert code == 0
    rows = {r["id"]: r for r in data}
    assert rows[1]["state"] == "active" and rows[1]["folders"] == ["INBOX", "\\Sent"]
    assert rows[1]["security"] == "starttls" and rows[1]["on_archive"] == "archive"
    assert rows[2]["state"] == "paused" and "AUTHENTICATIONFAILED" in rows[2]["reason"]
    assert rows[2]["folders"] == "all"
    assert rows[2]["reason"].endswith("refused: [AUTHENTICATIONFAILED] Authentication failed.")
    assert "Pa55word" not in json.dumps(data) and "not-the-password" not in json.dumps(data)

    code, data, _ = cli("imap", "sync", "--account", "1", "--once", "--json")
    assert code == 0 and data[0]["stored"] == 0

    # credentials are encrypted at rest: no plaintext password anywhere in the database
    for f in cli.data_dir.glob("bccd.sqlite3*"):
        blob = f.read_bytes()
        assert b"cli-Pa55word" not in blob and b"not-the-password" not in blob


def test_add_refuses_bad_input(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("company", "create", "Acme", "--slug", "acme")
    cli("user", "create", "alice@acme.test", "--company", "acme")
    monkeypatch.delenv("NOPE", raising=False)
    code, _, err = cli(
        "imap", "add", "alice@acme.test", "--host", "h", "--username", "u", "--password-env", "NOPE"
    )
    assert code == 1 and "environment variable NOPE" in err
    monkeypatch.setenv("PW", "x")
    code, _, err = cli(
        "imap", "add", "nobody@acme.test", "--host", "h", "--username", "u", "--password-env", "PW"
    )
    assert code == 1 and "no user nobody@acme.test" in err
    code, _, err = cli(
        "imap",
        "add",
        "alice@acme.test",
        "--host",
        "h",
        "--username",
        "u",
        "--password-env",
        "PW",
        "--ca-file",
        "/nonexistent.pem",
    )
    assert code == 1 and "--ca-file" in err
    monkeypatch.setenv("RT", "refresh")
    code, _, err = cli(
        "imap",
        "add",
        "alice@acme.test",
        "--host",
        "h",
        "--username",
        "u",
        "--oauth2",
        "--oauth2-token-url",
        "http://oauth.example/token",
        "--oauth2-client-id",
        "cid",
        "--oauth2-refresh-token-env",
        "RT",
    )
    assert code == 1 and "https" in err
    code, _, err = cli("imap", "add", "alice@acme.test", "--host", "h", "--username", "u")
    assert code == 2
    code, data, _ = cli(
        "imap",
        "add",
        "alice@acme.test",
        "--host",
        "imap.example",
        "--username",
        "u",
        "--oauth2",
        "--oauth2-token-url",
        "https://oauth.example/token",
        "--oauth2-client-id",
        "cid",
        "--oauth2-refresh-token-env",
        "RT",
        "--json",
    )
    assert code == 0 and data == {"id": 1}
    code, data, _ = cli("imap", "list", "--json")
    assert data[0]["auth"] == "xoauth2" and data[0]["port"] == 993
    assert "refresh" not in json.dumps(data)


def test_submission_settings_scope_and_folders_are_set_at_add_and_changed_with_imap_set(
        cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §7/§8: ``imap add/set --smtp-host/--smtp-port/--smtp-security``, ``--scope``,
    ``--folders``; only the settings given change; bad values are one-line errors."""
    alice(cli, monkeypatch)
    code, data, err = cli("imap", "add", "alice@acme.test", "--host", "imap.mail.test",
                          "--username", "alice", "--password-env", "IMAP_PW",
                          "--smtp-host", "smtp.mail.test", "--json")
    assert code == 0, err
    account = str(data["id"])
    [row] = cli("imap", "list", "--json")[1]
    assert row["scope"] == "all" and row["folders"] == "all"
    assert row["smtp"] == {"host": "smtp.mail.test", "port": 587, "security": "starttls"}

    code, row, err = cli("imap", "set", account, "--smtp-security", "ssl", "--smtp-host",
                         "smtps.mail.test", "--scope", "known", "--folders", "INBOX,Sent", "--json")
    assert code == 0, err
    assert row["smtp"] == {"host": "smtps.mail.test", "port": 465, "security": "ssl"}
    assert (row["scope"], row["folders"], row["on_archive"]) == ("known", ["INBOX", "Sent"], "none")

    code, row, err = cli("imap", "set", account, "--on-archive", "archive", "--json")
    assert code == 0 and row["on_archive"] == "archive" and row["scope"] == "known"
    assert row["smtp"]["host"] == "smtps.mail.test"  # untouched
    code, row, err = cli("imap", "set", account, "--no-smtp", "--all", "--json")
    assert code == 0 and row["smtp"] is None and row["folders"] == "all"

    for argv, words in [
        (("--smtp-port", "70000", "--smtp-host", "h.test"), "--smtp-port 70000 is out of range"),
        (("--smtp-port", "25"), "--smtp-port and --smtp-security need --smtp-host"),
        ((), "nothing to change"),
    ]:
        code, _, err = cli("imap", "set", account, *argv)
        assert code == 1 and words in err and "Traceback" not in err
    assert cli("imap", "set", "999", "--scope", "all")[2].strip().endswith("no IMAP account 999")


def test_the_providers_authserv_ids_are_set_at_add_and_changed_with_imap_set(
        cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §7 "Direction of synced mail": ``imap add/set --authserv-id ID`` (repeatable)
    names the provider's own Authentication-Results; ``--no-authserv-id`` trusts none."""
    alice(cli, monkeypatch)
    code, data, err = cli("imap", "add", "alice@acme.test", "--host", "imap.mail.test",
                          "--username", "alice", "--password-env", "IMAP_PW",
                          "--authserv-id", "MX.Google.com", "--authserv-id", "mx.google.com",
                          "--json")
    assert code == 0, err
    account = str(data["id"])
    assert cli("imap", "list", "--json")[1][0]["authserv_ids"] == ["mx.google.com"]
    code, row, err = cli("imap", "set", account, "--authserv-id", "a.test", "--authserv-id",
                         "b.test", "--json")
    assert code == 0 and row["authserv_ids"] == ["a.test", "b.test"], err
    code, row, err = cli("imap", "set", account, "--scope", "known", "--json")
    assert code == 0 and row["authserv_ids"] == ["a.test", "b.test"]  # untouched
    code, row, err = cli("imap", "set", account, "--no-authserv-id", "--json")
    assert code == 0 and row["authserv_ids"] == []
    code, _, err = cli("imap", "set", account, "--authserv-id", "mx.test; dmarc=pass")
    assert code == 1 and "is not an authserv-id" in err and "Traceback" not in err


def test_sync_once_on_a_terminal_shows_a_progress_bar_per_folder(
        cli: Any, dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = alice_mailbox(cli, dovecot, monkeypatch, "tty", 5)
    code, data, err = cli("imap", "add", "alice@acme.test", "--host", "127.0.0.1", "--port",
                          str(dovecot.ssl_port), "--username", user, "--password-env", "IMAP_PW",
                          "--ca-file", dovecot.ca_file, "--folders", "INBOX", "--json")
    assert (code, data) == (0, {"id": 1}), err
    # the sync in a process of its own, its stdout a terminal, read while it runs
    leader, follower = pty.openpty()
    errors = tmp_path / "sync.stderr"
    try:
        with errors.open("wb") as err_file:
            proc = subprocess.Popen([sys.executable, "-m", "bccd", "--config",
                                     str(tmp_path / "bccd.toml"), "imap", "sync", "--once"],
                                    stdout=follower, stderr=err_file)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process has closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        proc.wait(timeout=120)
    finally:
        os.close(leader)
    assert proc.returncode == 0, errors.read_text()
    text = shown.decode()
    assert "#1 INBOX" in text and "5/5" in text  # account 1's INBOX, all five synced
    assert "stored=5" in text  # the summary follows the progress bar
