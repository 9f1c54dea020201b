"""A capture SMTP server on loopback for outbound mail (aiosmtpd in its own thread).

Contract:

- ``CaptureSmtp(port=None)`` listens on ``127.0.0.1:port`` (a free port when None) once
  ``start()`` is called (or ``with CaptureSmtp() as cap``); ``stop()`` closes it, and it
  can be started again on the same port (a relay that comes back).
- Options: ``ssl_context`` (implicit TLS), ``tls_context`` (+ ``require_starttls``) for
  STARTTLS, ``auth=(user, password)`` to require AUTH LOGIN/PLAIN, ``refuse_rcpt="550 5.1.1
  …"`` to refuse every recipient.
- Every accepted message is appended to ``messages`` as a :class:`Captured` (envelope,
  raw bytes, whether TLS was on, who authenticated); ``wait_for(n, timeout)`` blocks until
  at least ``n`` arrived and returns them (AssertionError on timeout); ``clear()``.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.server import free_port


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool = False
    login: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def part(self, ctype: str) -> str:
        for p in self.message().walk():
            if p.get_content_type() == ctype and not p.is_multipart():
                return str(p.get_content())
        raise AssertionError(f"no {ctype} part")


class _Handler:
    def __init__(self, owner: CaptureSmtp) -> None:
        self.owner = owner

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.owner.refuse_rcpt:
            return self.owner.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        item = Captured(envelope.mail_from, list(envelope.rcpt_tos),
                        bytes(envelope.original_content or envelope.content),
                        tls=tls, login=login)
        with self.owner._cond:
            self.owner.messages.append(item)
            self.owner._cond.notify_all()
        return "250 2.0.0 captured"


class CaptureSmtp:
    def __init__(
        self,
        port: int | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth: tuple[str, str] | None = None,
        refuse_rcpt: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.auth = auth
        self.refuse_rcpt = refuse_rcpt
        self.messages: list[Captured] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert self.auth is not None
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if (user, password) == self.auth:
                return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)

    def start(self) -> CaptureSmtp:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls_context is not None)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      server_hostname="localhost", ready_timeout=10, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> CaptureSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} message(s), got {len(self.messages)}")
                self._cond.wait(left)
            return list(self.messages)

    def settle(self, seconds: float = 1.5) -> list[Captured]:
        """Wait ``seconds`` (for mail that should NOT come) and return what arrived."""
        time.sleep(seconds)
        with self._cond:
            return list(self.messages)
