"""A scripted Gmail-like submission server for tests (aiosmtpd in its own thread).

Like Gmail's ``smtp.gmail.com``, it keeps a copy of every message it accepts in the
user's Sent folder by itself — so a client must not APPEND a second copy. ``GmailLike(
dovecot, user)`` listens on ``127.0.0.1:port`` with STARTTLS (required before AUTH;
certificate from its own ``trustme`` CA, :attr:`ca_file`, :meth:`ssl_context`) and
accepts, for ``user`` only:

- ``AUTH PLAIN``/``LOGIN`` with the user's Dovecot password (or ``password=``);
- ``AUTH XOAUTH2`` with ``access_token=`` or any live access token of ``provider=`` (a
  ``tests/support/oauth_provider.OAuthProvider``) issued to ``user``; a bad token gets
  Gmail's answer: a ``334`` JSON challenge ``{"status":"400",…}``, then ``535 5.7.8``
  after the client's empty reply.

Every accepted message is appended (``imapclient``, logged in as ``user`` with the
Dovecot password) to ``sent_folder`` (``Sent``) of the test Dovecot *before* the ``250``
goes out, unless ``save_to_sent`` is False (a provider that does not), and recorded in
:attr:`messages` (``capture_smtp.Captured``; ``wait_for(n)``). ``refuse_rcpt="550 …"``
refuses every recipient. ``start()``/``stop()`` or ``with GmailLike(...) as gm``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.capture_smtp import Captured
from tests.support.dovecot import Dovecot
from tests.support.oauth_provider import OAuthProvider
from tests.support.ports import free_port

_XOAUTH2_ERROR = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})


class _Handler:
    def __init__(self, owner: GmailLike) -> None:
        self.owner = owner

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1].encode()
        else:
            got = await server.challenge_auth("")
            if not isinstance(got, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(got)
        try:
            fields = dict(f.split("=", 1) for f in base64.b64decode(blob).decode().split("\x01") if f)
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except (ValueError, KeyError):
            return AuthResult(success=False, handled=False)
        if self.owner._token_ok(user, token):
            return AuthResult(success=True, auth_data=user.encode())
        await server.challenge_auth(_XOAUTH2_ERROR)  # Gmail: error details, then 535
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.owner.refuse_rcpt:
            return self.owner.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        if self.owner.save_to_sent:
            # blocking, on purpose: the copy is in Sent before the client hears 250
            self.owner.dovecot.append(self.owner.user, raw, self.owner.sent_folder, flags=["\\Seen"])
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        item = Captured(envelope.mail_from, list(envelope.rcpt_tos), raw, tls=True, login=login)
        with self.owner._cond:
            self.owner.messages.append(item)
            self.owner._cond.notify_all()
        return "250 2.0.0 OK  1700000000 x1-20020a17090a000000b000000000000sm0000000.42 - gsmtp"


class GmailLike:
    def __init__(
        self,
        dovecot: Dovecot,
        user: str,
        *,
        password: str | None = None,
        access_token: str | None = None,
        provider: OAuthProvider | None = None,
        sent_folder: str = "Sent",
        save_to_sent: bool = True,
        refuse_rcpt: str | None = None,
    ) -> None:
        self.dovecot = dovecot
        self.user = user
        self.password = password if password is not None else dovecot.users[user]
        self.access_token = access_token
        self.provider = provider
        self.sent_folder = sent_folder
        self.save_to_sent = save_to_sent
        self.refuse_rcpt = refuse_rcpt
        self.host = "127.0.0.1"
        self.port = free_port()
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost", "smtp.gmail-like.test")
        self.messages: list[Captured] = []
        self.auth_failures = 0
        self._cond = threading.Condition()
        self._controller: Controller | None = None
        self._ca_path: str | None = None
        self._dir: str | None = None

    def _token_ok(self, user: str, token: str) -> bool:
        ok = user == self.user and (
            (self.access_token is not None and token == self.access_token)
            or (self.provider is not None and self.provider.token_owner(token) == self.user))
        if not ok:
            self.auth_failures += 1
        return ok

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode(), auth_data.password.decode()) == (self.user, self.password):
            return AuthResult(success=True, auth_data=auth_data.login)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    @property
    def ca_file(self) -> str:
        """The CA certificate (PEM) to trust, in a directory of its own (removed by stop())."""
        if self._ca_path is None:
            self._dir = tempfile.mkdtemp(prefix="bccd-gmail-like-")
            self._ca_path = os.path.join(self._dir, "ca.pem")
            self.ca.cert_pem.write_to_path(self._ca_path)
        return self._ca_path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def start(self) -> GmailLike:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(tls)
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, server_hostname="localhost",
            ready_timeout=10, tls_context=tls, require_starttls=True, authenticator=self._authenticate,
            auth_required=True, auth_require_tls=True, ident="smtp.gmail-like.test ESMTP gsmtp")
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._ca_path = None, None

    def __enter__(self) -> GmailLike:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} message(s), got {len(self.messages)}")
                self._cond.wait(left)
            return list(self.messages)
