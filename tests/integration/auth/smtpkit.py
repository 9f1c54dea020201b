"""Helpers of the end-to-end authenticity tests: a per-test context (its own DNS names,
keys, message builder, envelope), the SMTP client, and what the database holds."""

from __future__ import annotations

import itertools
import secrets
import shutil
import smtplib
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bccd.auth.dkim import verify_signatures
from bccd.auth.dns import Resolver
from tests.support.authkit import Key, sign
from tests.support.dnsserver import DnsTestServer
from tests.support.server import BccdServer

SPF_LOOPBACK = "v=spf1 ip4:127.0.0.1 -all"   # the SMTP client connects from 127.0.0.1
AUTHSERV_ID = "bccd.test"   # smtp.hostname of the test server: our authserv-id
GENKEY = shutil.which("opendkim-genkey") or shutil.which("opendkim-genkey", path="/usr/sbin")
TESTMSG = shutil.which("opendkim-testmsg") or shutil.which("opendkim-testmsg", path="/usr/sbin")
_serial = itertools.count(1)


@dataclass
class Ctx:
    """One test case: its From domain, an unrelated attacker domain, a unique body token,
    the envelope it sends with, and the records it publishes."""

    dom: str                     # the user's domain (A-label)
    evil: str                    # a domain the attacker controls
    keys: dict[str, Key]
    dns: DnsTestServer
    workdir: Path
    opendkim: Any = None         # conftest.OpendkimKey | None
    token: str = field(default_factory=lambda: f"tok{next(_serial):04d}{secrets.token_hex(4)}")
    login: str = ""              # the Smart Bcc user's login address
    mail_from: str = ""          # MAIL FROM ("" = null sender)
    helo: str = "client.example"
    smtputf8: bool = False
    message_id: str = field(default_factory=lambda: f"m{secrets.token_hex(6)}")

    def __post_init__(self) -> None:
        self.login = self.login or f"alice@{self.dom}"
        self.mail_from = self.mail_from or f"alice@{self.dom}"

    # -- messages ------------------------------------------------------------------------
    def message(self, from_value: str | None = None, *, subject: str = "Quarterly numbers",
                body: str | None = None, extra_headers: tuple[str, ...] = (),
                from_headers: tuple[str, ...] | None = None) -> bytes:
        froms = from_headers if from_headers is not None else (
            from_value if from_value is not None else f"Alice <alice@{self.dom}>",)
        headers = [
            *extra_headers,
            *(f"From: {f}" for f in froms),
            "To: Bob <bob@customer.example>",
            f"Subject: {subject}",
            "Date: Thu, 26 Nov 2026 10:00:00 +0000",
            f"Message-ID: <{self.message_id}@{self.dom}>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        text = body if body is not None else (
            f"Hello Bob,\r\n\r\nthe numbers are attached ({self.token}).\r\n")
        return ("\r\n".join(headers) + "\r\n\r\n" + text).encode()

    def sign(self, raw: bytes, key: str = "rsa2048", domain: str | None = None,
             selector: str = "sel", **kwargs: Any) -> bytes:
        return sign(raw, self.keys[key], domain or self.dom, selector, **kwargs)

    # -- DNS -----------------------------------------------------------------------------
    def publish_key(self, key: str = "rsa2048", domain: str | None = None,
                    selector: str = "sel", record: str | None = None) -> None:
        self.dns.add_txt(f"{selector}._domainkey.{domain or self.dom}",
                         record if record is not None else self.keys[key].record)

    def dmarc(self, tags: str = "p=reject", domain: str | None = None) -> None:
        self.dns.add_txt(f"_dmarc.{domain or self.dom}", f"v=DMARC1; {tags}")

    def spf(self, record: str = SPF_LOOPBACK, domain: str | None = None) -> None:
        self.dns.add_txt(domain or self.dom, record)

    def dkim_passes_for(self, raw: bytes, domain: str) -> bool:
        """Whether ``raw`` carries a passing DKIM signature of ``domain`` (fresh resolver)."""
        resolver = Resolver(["127.0.0.1"], port=self.dns.port, timeout=1.0)
        return any(s.passed and s.domain == domain for s in verify_signatures(raw, resolver))


def send(srv: BccdServer, rcpt: str, raw: bytes, *, mail_from: str, helo: str,
         smtputf8: bool = False) -> tuple[int, str]:
    """One SMTP transaction from 127.0.0.1; DATA's (code, text). RCPT must be accepted."""
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=60) as s:
        s.ehlo(helo)
        code, msg = s.mail(mail_from, ["SMTPUTF8", "BODY=8BITMIME"] if smtputf8 else [])
        assert code == 250, (code, msg)
        code, msg = s.rcpt(rcpt)
        assert code == 250, (code, msg)
        code, msg = s.data(raw)
        return code, msg.decode("utf-8", "replace")


def db_path(srv: BccdServer) -> Path:
    return Path(srv.sections["storage"]["data_dir"]) / "bccd.sqlite3"


def query(srv: BccdServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{db_path(srv)}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def stored_anywhere(srv: BccdServer, user_id: int, token: str) -> list[str]:
    """Where the copy (or its body) is kept: tables and files that must stay empty of it."""
    found = []
    if query(srv, "SELECT count(*) FROM messages WHERE user_id = ?", user_id)[0][0]:
        found.append("messages")
    if query(srv, "SELECT count(*) FROM message_raw WHERE instr(raw, ?) > 0",
             token.encode())[0][0]:
        found.append("message_raw")
    if query(srv, "SELECT count(*) FROM quarantine WHERE user_id = ? OR instr(raw, ?) > 0",
             user_id, token.encode())[0][0]:
        found.append("quarantine")
    for row in query(srv, "SELECT * FROM rejections"):
        if token in repr(row):
            found.append("rejections")
    data = Path(srv.sections["storage"]["data_dir"])
    for path in data.rglob("*"):  # the database files (WAL included) and the blob store
        if path.is_file() and token.encode() in path.read_bytes():
            found.append(str(path.relative_to(data)))
    return found


@dataclass(frozen=True)
class OpendkimKey:
    private: Path       # the key file opendkim-genkey wrote
    record: str         # the TXT record it wrote (h=sha256 included)
    key: Key            # the same key for the authkit signer (rsa-sha256)


def opendkim_testmsg(raw: bytes, key: Path, domain: str, workdir: Path) -> bytes:
    """``raw`` signed by ``opendkim-testmsg`` (which only produces rsa-sha1)."""
    assert TESTMSG is not None
    src = workdir / "in.eml"
    src.write_bytes(raw.replace(b"\r\n", b"\n"))  # it fstat()s its input: a file, not a pipe
    with src.open("rb") as stdin:
        proc = subprocess.run([TESTMSG, "-C", "-d", domain, "-s", "odk", "-k", str(key),
                               "-t", str(workdir)], stdin=stdin, capture_output=True,
                              check=True, timeout=60)
    assert proc.stdout.startswith(b"DKIM-Signature:"), proc.stderr
    return proc.stdout
