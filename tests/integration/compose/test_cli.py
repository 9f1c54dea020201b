"""``bccd send`` and ``bccd template`` (SPEC §8, §12) as a person runs them: separate
processes, JSON on stdout, one-line errors with exit 1; the signature from ``user set
--signature-file``; the mailbox's submission settings from ``imap add/set --smtp-*``."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from tests.support.compose_world import ComposeWorld, Mailuser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_cli")]


def _ok(world: ComposeWorld, *args: str) -> dict:
    r = world.srv.cli_proc(*args, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" or all('"level"' in line for line in r.stderr.splitlines())
    return dict(json.loads(r.stdout))


def _fails(world: ComposeWorld, *args: str) -> str:
    r = world.srv.cli_proc(*args)
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    [line] = [x for x in r.stderr.splitlines() if x.startswith("bccd: error:")]
    assert "Traceback" not in r.stderr
    return line


def test_send_from_a_deal_with_a_template_an_attachment_and_the_signature(
        world: ComposeWorld, alice: Mailuser, tmp_path: Path) -> None:
    sig = tmp_path / "sig.html"
    sig.write_text("<p><b>Alice</b> · ACME</p><script>x()</script>")
    shown = _ok(world, "user", "set", alice.email, "--signature-file", str(sig))
    assert shown["email"] == alice.email
    tpl = tmp_path / "t.html"
    tpl.write_text('<p>Dear {{person.name}}, about {{deal.title}} ({{deal.value}})</p>')
    t = _ok(world, "template", "add", alice.email, "--name", "Deal note",
            "--subject", "{{deal.title}}: next steps", "--html-file", str(tpl))
    assert [x["name"] for x in _ok_list(world, "template", "list", alice.email)] == ["Deal note"]
    pdf = tmp_path / "quote.pdf"
    pdf.write_bytes(b"%PDF-1.4 quote")
    out = _ok(world, "send", alice.email, "--to", "Dana Client <dana@client.test>",
              "--template", str(t["id"]), "--deal", str(world.ids["deal"]), "--attach", str(pdf))
    assert out["status"] == "sent" and out["id"] and out["thread_id"]
    [got] = world.received(out["message_id"])
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "Big deal: next steps"
    html = msg.get_body(("html",)).get_content()
    assert "Dear Dana Client, about Big deal (12,000 EUR)" in html
    assert "<b>Alice</b> · ACME" in html and "script" not in html
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "quote.pdf" and att.get_content_type() == "application/pdf"
    shown = world.srv.cli("mail", "show", str(out["thread_id"]))
    assert ("deal", world.ids["deal"], "manual") in {(lk["kind"], lk["id"], lk["how"])
                                                     for lk in shown["links"]}
    # a plain-text reply by the RFC Message-ID, without the signature
    body = tmp_path / "reply.txt"
    body.write_text("One more thing.\n")
    again = _ok(world, "send", alice.email, "--to", "dana@client.test", "--text-file", str(body),
                "--reply-to", out["message_id"], "--no-signature")
    assert again["thread_id"] == out["thread_id"]
    [got] = world.received(again["message_id"])
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "Re: Big deal: next steps"
    assert msg["In-Reply-To"] == f"<{out['message_id']}>"
    head = msg.get_content().split("wrote:")[0]   # the quote below holds the first one's
    assert head.startswith("One more thing.") and "ACME" not in head and "-- " not in head
    assert _ok(world, "template", "remove", str(t["id"])) == {"id": t["id"], "removed": True}


def _ok_list(world: ComposeWorld, *args: str) -> list:
    r = world.srv.cli_proc(*args, "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def test_errors_are_one_line_and_exit_1(world: ComposeWorld, alice: Mailuser, tmp_path: Path) -> None:
    body = tmp_path / "b.txt"
    body.write_text("x")
    line = _fails(world, "send", alice.email, "--to", "bob@", "--subject", "x", "--text-file", str(body))
    assert line == "bccd: error: to[0]: 'bob@' is not an email address"
    world.submission.refuse("gone@client.test", "550 5.1.1 Gone away")
    line = _fails(world, "send", alice.email, "--to", "gone@client.test", "--subject", "x",
                  "--text-file", str(body))
    assert "550 5.1.1" in line and "Gone away" in line
    line = _fails(world, "send", alice.email, "--to", "dana@client.test", "--subject", "x",
                  "--text-file", str(tmp_path / "missing.txt"))
    assert "missing.txt" in line
    tpl = tmp_path / "bad.html"
    tpl.write_text("{{person.shoe_size}}")
    line = _fails(world, "template", "add", alice.email, "--name", "x", "--html-file", str(tpl))
    assert "unknown field {{person.shoe_size}}" in line
    line = _fails(world, "template", "add", alice.email, "--name", "x", "--html-file", str(body),
                  "--shared")
    assert "only admins share" in line
    nobody = world.user("cli-nomailbox", mailbox=False)
    line = _fails(world, "send", nobody.email, "--to", "dana@client.test", "--subject", "x",
                  "--text-file", str(body))
    assert "no mailbox that can send" in line


def test_imap_set_changes_the_submission_settings(world: ComposeWorld, tmp_path: Path) -> None:
    user = world.user("cli-set", security="ssl")
    listed = {a["id"]: a for a in world.srv.cli("imap", "list")}
    assert listed[user.mailbox_id]["smtp"] == {"host": "127.0.0.1", "port": world.submission.smtps_port,
                                               "security": "ssl"}
    world.srv.cli("imap", "set", str(user.mailbox_id), "--smtp-host", "127.0.0.1", "--smtp-port",
                  str(world.submission.port), "--smtp-security", "starttls")
    body = tmp_path / "b.txt"
    body.write_text("via STARTTLS now")
    out = _ok(world, "send", user.email, "--to", "dana@client.test", "--subject", "After set",
              "--text-file", str(body))
    assert out["status"] == "sent" and world.received(out["message_id"])
