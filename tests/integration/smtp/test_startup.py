"""``bccd serve`` answers SMTP before it has loaded the rest (``bccd.startup``).

Each test starts ``bccd serve`` through a runner that holds the import of one module
(the rest of the server, ``bccd.service``, or the storage layer) until the test lets it
go, so what is answered while bccd is still starting is seen deterministically: the
greeting, EHLO and MAIL at once, before the HTTP app, the ingest path or DKIM are even
imported; RCPT only once the ingest path is ready (never a 250 before); ``421 4.3.2``
for a RCPT that waited when the start fails or SIGTERM comes first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("3")

# ``python -c`` runner: ``bccd`` whose import of module argv[1] waits until the file
# argv[2] exists, after writing the modules loaded so far to argv[3]
_HELD = """
import importlib.abc, json, os, sys, time
held, gate, seen = sys.argv[1:4]
del sys.argv[1:4]

class Hold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == held:
            with open(seen + ".tmp", "w") as f:
                json.dump(sorted(sys.modules), f)
            os.rename(seen + ".tmp", seen)
            while not os.path.exists(gate):
                time.sleep(0.01)
        return None

sys.meta_path.insert(0, Hold())
from bccd.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

# nothing of this is needed to greet, and all of it is loaded after the greeting (of the
# authenticity layer only the DNS settings' check comes first: bccd.auth.dns)
_LATER = ("fastapi", "starlette", "uvicorn", "jinja2", "dkim", "spf", "authres", "nh3",
          "imapclient", "bccd.web", "bccd.ingest",
          "bccd.auth.authenticator", "bccd.auth.dkim", "bccd.auth.spf", "bccd.auth.dmarc",
          "bccd.auth.results", "bccd.imap", "bccd.compose", "bccd.linking", "bccd.notify",
          "bccd.smtp.delivery", "bccd.service")

MESSAGE = ("From: alice@acme.test\r\nTo: bob@example.test\r\nSubject: early\r\n"
           "Message-ID: <startup-early@acme.test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
           "\r\nSent while bccd was starting.\r\n")


class Held:
    """``bccd serve`` with the import of ``module`` held until ``release()``."""

    def __init__(self, srv: BccdServer, module: str) -> None:
        self.srv = srv
        self.gate = srv.dir / "gate"
        self.seen = srv.dir / "seen.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
        with srv.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _HELD, module, str(self.gate), str(self.seen),
                 "--config", str(srv.config), "serve"],
                cwd=srv.dir, env=env, stdout=log, stderr=subprocess.STDOUT)

    def loaded_when_held(self) -> list[str]:
        wait_until(self.seen.exists, 60, what="bccd serve reached the held import",
                   detail=self.srv.log)
        return list(json.loads(self.seen.read_text()))

    def release(self) -> None:
        self.gate.touch()

    def stop(self) -> None:
        self.release()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def held(srv: BccdServer, module: str) -> Iterator[Held]:
    h = Held(srv, module)
    try:
        yield h
    finally:
        h.stop()


class Client:
    """SMTP by hand: a test must see that a reply does *not* come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")

    def reply(self, timeout: float = 60) -> str:
        self.sock.settimeout(timeout)
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line)
            if not line or line[3:4] != "-":
                return "".join(lines)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def command(self, line: str) -> str:
        self.send(line)
        return self.reply()

    def silent_for(self, seconds: float) -> bool:
        """No byte came within ``seconds`` (what was read stays unread)."""
        self.sock.settimeout(seconds)
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def _greeted_and_rcpt_waiting(srv: BccdServer, rcpt: str) -> Client:
    c = Client(srv.smtp_port)
    assert c.reply().startswith("220 ")
    assert c.command("EHLO client.test").startswith("250-")
    assert c.command("MAIL FROM:<alice@acme.test>").startswith("250 ")
    c.send(f"RCPT TO:<{rcpt}>")
    assert c.silent_for(1.0), "RCPT was answered before the ingest path was ready"
    return c


def test_serve_greets_before_it_loads_the_rest_and_rcpt_waits_for_the_ingest_path(
        make_server: Any) -> None:
    srv = make_server(start=False)
    rcpt = srv.setup_user()["bcc_address"]
    with held(srv, "bccd.service") as h:
        assert _loaded(h.loaded_when_held(), _LATER) == []
        c = _greeted_and_rcpt_waiting(srv, rcpt)
        assert b"bccd_ready" not in srv.log_path.read_bytes()
        h.release()
        assert c.reply().startswith("250 "), "RCPT once the ingest path is ready"
        assert c.command("DATA").startswith("354")
        c.send(MESSAGE.replace("\r\n.", "\r\n..") + ".")
        assert c.reply().startswith("250 ")
        c.command("QUIT")
        c.close()
        wait_until(lambda: b"bccd_ready" in srv.log_path.read_bytes(), 60,
                   what="bccd_ready", detail=srv.log)
        threads = srv.cli("mail", "list", "alice@acme.test")
        assert [t["subject"] for t in threads] == ["early"]


def test_a_start_that_fails_answers_the_waiting_rcpt_421_and_says_why(
        make_server: Any, pg_url: str) -> None:
    srv = make_server(database_url=pg_url, start=False)  # never migrated: not current
    with held(srv, "bccd.store") as h:  # the database is opened after the greeting too
        assert _loaded(h.loaded_when_held(), ("sqlalchemy", "bccd.store", *_LATER)) == []
        c = _greeted_and_rcpt_waiting(srv, "acme+anyone@bcc.localhost")
        h.release()
        assert c.reply().startswith("421 4.3.2 ")
        c.close()
        assert h.proc.wait(60) == 1
        err = srv.log_path.read_text()  # stdout and stderr
        assert err.strip().splitlines()[-1] == (  # the log lines before it, no traceback
            "bccd: error: the database schema is not current: run `bccd db upgrade`")
        assert "Traceback" not in err


def test_sigterm_while_starting_answers_the_waiting_rcpt_421_and_exits_cleanly(
        make_server: Any) -> None:
    srv = make_server(start=False)
    rcpt = srv.setup_user()["bcc_address"]
    with held(srv, "bccd.service") as h:
        h.loaded_when_held()
        c = _greeted_and_rcpt_waiting(srv, rcpt)
        h.proc.send_signal(signal.SIGTERM)
        h.release()
        assert c.reply().startswith("421 4.3.2 ")
        c.close()
        assert h.proc.wait(60) == 0
        assert b"bccd_ready" not in srv.log_path.read_bytes()
