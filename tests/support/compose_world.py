"""The real parts of sending (SPEC §12) wired together for tests.

``ComposeWorld(tmp, database_url=None)`` starts, on loopback:

- an OAuth 2.0 provider (``oauth_provider.OAuthProvider``) whose access tokens the test
  Dovecot accepts;
- the test Dovecot (``sasl_socket=True``): the users' own mailboxes, their sent folders;
- a ``CaptureSmtp`` — "the internet": where the submission server relays mail to
  counterparts (``dana@client.test`` …);
- a real ``bccd serve`` (webhooks to a loopback ``Receiver``);
- the Postfix submission service (``submission.Submission``) with SASL through Dovecot,
  relaying to the capture server — except mail for bccd's Bcc domain, which it delivers
  to bccd's SMTP port (so a Smart Bcc copy of a sent message really arrives);
- company ``acme`` with its CRM (person Dana Client <dana@client.test> at organization
  Client Co, deal "Big deal" worth "12,000 EUR", a second person Finn without a deal);
  ``user(name)`` makes a bccd user ``<name>@mail.test`` with a Dovecot mailbox and that
  mailbox connected in bccd with submission settings (``imap add … --smtp-*``).

``ca_file`` trusts both the Dovecot and the Postfix certificates (one CA file serves the
mailbox's IMAP and its submission server). Every server is stopped by ``close()``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dovecot import Dovecot
from tests.support.server import BccdServer
from tests.support.submission import Submission
from tests.support.web_hooks import Receiver

PASSWORD = "right-Pa55"
MAX_MESSAGE = 3 * 1024 * 1024   # smtp.max_message_size: the size limit of mail written in bccd
_n = itertools.count(1)


@dataclass
class Mailuser:
    email: str
    token: str
    bcc_address: str
    mailbox_id: int | None
    user_id: int

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ComposeWorld:
    def __init__(self, tmp: Path, *, database_url: str | None = None) -> None:
        from tests.support.oauth_provider import OAuthProvider  # Authlib: only when started

        self.tmp = tmp
        self._stack = contextlib.ExitStack()
        try:
            self.provider = self._stack.enter_context(OAuthProvider())
            self.provider.register_client("bccd", "bccd-s3cret", ["http://127.0.0.1/cb"])
            self.dovecot = self._stack.enter_context(
                Dovecot(oauth_introspection_url=self.provider.introspection_url, sasl_socket=True))
            self.capture = self._stack.enter_context(CaptureSmtp())
            self.hooks = self._stack.enter_context(Receiver())
            self.srv = BccdServer(tmp, {"webhooks": {"url": self.hooks.url, "secret": "hook-s3cret"},
                                        "imap": {"poll_interval": 3600},
                                        "smtp": {"max_message_size": MAX_MESSAGE}},
                                  database_url=database_url)
            self.submission = Submission(
                self.dovecot, self.capture.port,
                transport={self.srv.bcc_domain: f"smtp:[127.0.0.1]:{self.srv.smtp_port}"})
            self._stack.enter_context(self.submission)
            self.ca_file = str(tmp / "mail-ca.pem")
            Path(self.ca_file).write_text(Path(self.dovecot.ca_file).read_text()
                                          + Path(self.submission.ca_file).read_text())
            if database_url:
                self.srv.cli("db", "upgrade")
            self.srv.start()
            self._stack.callback(self.srv.stop)
            self.admin = self.srv.setup_user("boss@mail.test", company="acme", name="Boss",
                                             admin=True)
            self.ids = self._crm()
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    # ------------------------------------------------------------ the world
    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin['api_token']}"}
        return httpx.Client(base_url=f"{self.srv.http_url}/api/v1", headers=headers, timeout=60)

    def _crm(self) -> dict[str, int]:
        with self.api() as a:
            org = a.put("/admin/organizations/o-client", json={"name": "Client Co"}).json()
            dana = a.put("/admin/persons/p-dana", json={
                "name": "Dana Client", "emails": ["dana@client.test"],
                "organization_id": org["id"]}).json()
            finn = a.put("/admin/persons/p-finn", json={
                "name": "Finn Other", "emails": ["finn@other-client.test"]}).json()
            deal = a.put("/admin/deals/d-big", json={"title": "Big deal", "person_id": dana["id"],
                                                     "value": "12,000 EUR"}).json()
        return {"org": org["id"], "dana": dana["id"], "finn": finn["id"], "deal": deal["id"]}

    def user(self, name: str | None = None, *, smtp_port: int | None = None,
             security: str = "starttls", mailbox: bool = True, password: str = PASSWORD,
             oauth: bool = False, smtp_host: str = "127.0.0.1", ca_file: str | None = None,
             mechanism: str = "xoauth2") -> Mailuser:
        email = f"{name or 'user'}{next(_n)}@mail.test"
        self.dovecot.add_user(email, PASSWORD)
        made = self.srv.cli("user", "create", email, "--company", "acme", "--name",
                            (name or "User").title())
        mailbox_id = None
        if mailbox:
            args = ["imap", "add", email, "--host", "127.0.0.1", "--port", str(self.dovecot.ssl_port),
                    "--security", "ssl", "--username", email, "--ca-file", ca_file or self.ca_file,
                    "--smtp-host", smtp_host, "--smtp-security", security, "--smtp-port",
                    str(smtp_port or (self.submission.port if security == "starttls"
                                      else self.submission.smtps_port))]
            if oauth:
                tokens = self.provider.grant(email, client_id="bccd")
                os.environ["BCCD_TEST_RT"] = tokens["refresh_token"]
                os.environ["BCCD_TEST_CS"] = "bccd-s3cret"
                args += ["--oauth2", "--oauth2-token-url", self.provider.token_url,
                         "--oauth2-client-id", "bccd", "--oauth2-client-secret-env", "BCCD_TEST_CS",
                         "--oauth2-refresh-token-env", "BCCD_TEST_RT", "--oauth2-mechanism", mechanism]
            else:
                os.environ["BCCD_TEST_PW"] = password
                args += ["--password-env", "BCCD_TEST_PW"]
            try:
                mailbox_id = int(self.srv.cli(*args)["id"])
            finally:
                for var in ("BCCD_TEST_PW", "BCCD_TEST_RT", "BCCD_TEST_CS"):
                    os.environ.pop(var, None)
        return Mailuser(email, made["api_token"], made["bcc_address"], mailbox_id, made["id"])

    # ------------------------------------------------------------ looking at it
    def received(self, message_id: str, *, timeout: float = 20.0) -> list[bytes]:
        """The bytes the capture server (the counterparts' side) got for this Message-ID."""
        needle = message_id.encode()
        deadline = time.monotonic() + timeout
        while True:
            found = [m.data for m in list(self.capture.messages) if needle in m.data[:20000]]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def ca_with(self, *pem_files: str) -> str:
        """A CA file trusting the Dovecot and these certificates too."""
        path = self.tmp / f"ca-{next(_n)}.pem"
        path.write_text(Path(self.dovecot.ca_file).read_text()
                        + "".join(Path(p).read_text() for p in pem_files))
        return str(path)

    def hook_events(self, type_: str) -> list[dict[str, Any]]:
        return [h.event() for h in self.hooks.delivered() if h.event()["type"] == type_]


def strip_relay_headers(raw: bytes) -> bytes:
    """The message as bccd submitted it: Postfix prepends its ``Received:`` field (with
    continuation lines) and adds nothing else to a message that has Message-ID and Date."""
    out = raw
    while True:
        m = re.match(rb"Received:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*", out)
        if m is None:
            return out
        out = out[m.end():]


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {fn}")
        time.sleep(every)
