"""The SMTP (or LMTP) listener: aiosmtpd on the process's own event loop, SPEC §3 limits.

``SmtpService(settings)`` → ``await start(sock=None)`` (``sock``: an inherited
listening socket, systemd socket activation) / ``attach(delivery)`` (the ingest path is
ready: until then RCPT waits, see ``bccd.smtp.handler``) / ``unavailable()`` (it will not
be: a waiting RCPT gets 421 4.3.2) / ``await reload_tls()`` (SIGHUP: new certificate for
new connections; the old one stays when the new one cannot be loaded) /
``await stop(drain_seconds)``. This module and ``handler`` load nothing of the ingest
path (``bccd.smtp.delivery`` does), so ``bccd serve`` listens first.

What a peer sees (every reply from ``replies``, each with an enhanced status code):

* Connection caps: over ``smtp.max_connections`` → ``421 4.3.2`` (server busy); over
  ``smtp.max_connections_per_ip`` from one address → ``421 4.7.0`` (trusted relays are only
  counted against the global cap). While stopping: ``421 4.3.2``.
* Early talkers: a client that sends anything before the greeting (after
  ``smtp.greet_pause``, default 0 s: only what already arrived) → ``554 5.5.0``, closed.
* HELO/EHLO/LHLO names with control characters, whitespace or undecodable bytes →
  ``501 5.5.4`` (``guard.valid_helo``).
* Lines up to ``smtp.max_line_length`` are accepted unchanged (DKIM breaks if split);
  longer command or data lines → ``500 5.5.2``. One command repeated more than
  ``smtp.command_call_limit`` times, or 5 unknown commands → ``421 4.7.0``, closed.
* Slow clients: idle longer than ``smtp.timeout`` → ``421 4.4.2``. During DATA the time
  left starts at ``smtp.timeout``, each read of N bytes adds N / ``smtp.min_data_rate``
  seconds (never above ``smtp.timeout``), and the time spent waiting is taken off: a
  client slower than the floor gets ``421 4.4.2`` (Postfix's ``smtpd_min_data_rate``).
  A session older than ``smtp.connection_deadline`` → ``421 4.4.2`` (after the reply of
  a message being filed, never in the middle of a commit).
* XFORWARD (NAME ADDR PROTO HELO) is advertised to and accepted from
  ``smtp.trusted_relays`` only; anyone else gets ``550 5.7.0``. Values are forgotten at
  the end of each transaction.
* ``smtp.lmtp = true``: LMTP (LHLO; HELO/EHLO → ``500 5.5.1``), one reply per accepted
  RCPT after DATA, refusals of the whole DATA (too big, line too long) included.
* Stopping: new connections and new transactions get ``421 4.3.2``; transactions in
  flight (MAIL … end of DATA, filing included) get up to ``drain_seconds`` to finish;
  then every remaining connection gets ``421 4.3.2`` and is closed.

Nothing here blocks the event loop: certificates are loaded in a worker thread and the
handler sends CPU and database work to executors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import socket
import ssl
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import SMTP, Session, syntax

from bccd import replies as R
from bccd.config import Settings
from bccd.log import get_logger
from bccd.replies import Reply
from bccd.smtp import guard, paths
from bccd.smtp.handler import Handler

if TYPE_CHECKING:
    from bccd.smtp.delivery import Delivery

log = get_logger("bccd.smtp")

_conn_ids = itertools.count(1)


class _State:
    """What every connection of one listener shares."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relays = guard.parse_networks(settings.smtp.trusted_relays)
        self.closing = False
        self.total = 0
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.protocols: set[BccdSMTP] = set()
        self.changed = asyncio.Event()  # a transaction ended or a connection went away

    def busy(self) -> int:
        return sum(1 for p in self.protocols if p.in_transaction)


class BccdSession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.bccd_xforward: dict[str, str] = {}


class BccdSMTP(SMTP):
    bccd_lmtp = False

    def __init__(self, handler: Handler, *, state: _State, **kw: Any) -> None:
        settings = state.settings
        # the StreamReader limit is taken from line_length_limit inside SMTP.__init__
        self.line_length_limit = settings.smtp.max_line_length + 2
        # aiosmtpd keeps this dict on the class, shared by every session (and grown by each
        # EHLO): one per connection instead
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.bccd_state = state
        self.bccd_limits = settings.smtp
        self.bccd_conn = next(_conn_ids)
        self.bccd_ip = ""
        self.bccd_trusted = False
        self.bccd_counted = False
        self.bccd_bytes = 0
        self.bccd_phase = "idle"  # idle | data (receiving) | processing (being filed)
        self.bccd_data_left = 0.0
        self.bccd_data_last = 0.0
        self.bccd_deadline: asyncio.TimerHandle | None = None
        self.bccd_deadline_hit = False
        self.bccd_wire: guard.WireScanner | None = None
        super().__init__(handler, **kw)

    # -- bookkeeping ----------------------------------------------------------------------
    @property
    def xforward_allowed(self) -> bool:
        return self.bccd_trusted

    @property
    def in_transaction(self) -> bool:
        if self.bccd_phase != "idle":
            return True
        return bool(self.envelope is not None and self.envelope.mail_from)

    def _create_session(self) -> BccdSession:
        return BccdSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.bccd_counted:  # the first call (STARTTLS calls it again)
            peer = transport.get_extra_info("peername")
            self.bccd_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            self.bccd_trusted = guard.ip_in(self.bccd_ip, self.bccd_state.relays)
            st = self.bccd_state
            st.total += 1
            st.per_ip[self.bccd_ip] += 1
            st.protocols.add(self)
            self.bccd_counted = True
            if self.bccd_limits.connection_deadline:
                self.bccd_deadline = self.loop.call_later(
                    self.bccd_limits.connection_deadline, self._deadline_reached)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        st = self.bccd_state
        if self.bccd_counted:
            st.total -= 1
            st.per_ip[self.bccd_ip] -= 1
            if st.per_ip[self.bccd_ip] <= 0:
                del st.per_ip[self.bccd_ip]
            st.protocols.discard(self)
            self.bccd_counted = False
            st.changed.set()
        if self.bccd_deadline is not None:
            self.bccd_deadline.cancel()
        super().connection_lost(error)

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()  # type: ignore[no-untyped-call]
        if isinstance(self.session, BccdSession):
            self.session.bccd_xforward = {}  # XFORWARD values last one transaction
        self.bccd_state.changed.set()

    def goodbye(self, reply: Reply) -> None:
        """Send a last reply (best effort, without waiting) and close the connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(Exception):
            transport.write(f"{reply}\r\n".encode())  # type: ignore[attr-defined]
        transport.close()

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = "\r\n".join(R.with_enhanced_code(line) for line in status.split("\r\n"))
        await super().push(status)

    # -- timers: idle, data rate, session deadline ----------------------------------------
    def _timeout_cb(self) -> None:
        reply = R.TOO_SLOW if self.bccd_phase == "data" else R.TIMEOUT
        log.info("smtp_timeout", client=self.bccd_ip, conn=self.bccd_conn, reply=str(reply))
        self.goodbye(reply)

    def _deadline_reached(self) -> None:
        if self.bccd_phase == "processing":  # never cut a commit: close after its reply
            self.bccd_deadline_hit = True
            return
        log.info("smtp_deadline", client=self.bccd_ip, conn=self.bccd_conn)
        self.goodbye(R.SESSION_TOO_LONG)

    @property
    def bare_dot_line(self) -> bool:
        """This DATA carried a dot line next to a bare CR/LF on the wire (smuggling)."""
        return self.bccd_wire is not None and self.bccd_wire.found

    def data_received(self, data: bytes) -> None:
        self.bccd_bytes += len(data)
        if self.bccd_phase == "data" and self.bccd_wire is not None:
            self.bccd_wire.feed(data)
        rate = self.bccd_limits.min_data_rate
        if self.bccd_phase == "data" and rate:
            now = self.loop.time()
            left = self.bccd_data_left - (now - self.bccd_data_last) + len(data) / rate
            self.bccd_data_left = min(float(self.bccd_limits.timeout), left)
            self.bccd_data_last = now
            if self.bccd_data_left <= 0:
                log.info("smtp_too_slow", client=self.bccd_ip, conn=self.bccd_conn)
                self.goodbye(R.TOO_SLOW)
                return
            self._reset_timeout(self.bccd_data_left)
        super().data_received(data)

    # -- the session ----------------------------------------------------------------------
    async def _handle_client(self) -> None:
        structlog.contextvars.bind_contextvars(conn=self.bccd_conn)
        st = self.bccd_state
        limits = self.bccd_limits
        refuse = None
        if st.closing:
            refuse = R.SHUTTING_DOWN
        elif st.total > limits.max_connections:
            refuse = R.OVERLOADED
        elif not self.bccd_trusted and st.per_ip[self.bccd_ip] > limits.max_connections_per_ip:
            refuse = R.CLIENT_LIMIT
        if refuse is None and limits.greet_pause:
            await asyncio.sleep(limits.greet_pause)
        if refuse is None and self.bccd_bytes:
            refuse = R.EARLY_TALKER
        if refuse is not None:
            log.info("connection_refused", client=self.bccd_ip, reply=str(refuse))
            self.goodbye(refuse)
            return
        await super()._handle_client()

    async def _check_helo(self, hostname: str) -> bool:
        if hostname and not guard.valid_helo(hostname):
            log.info("helo_refused", client=self.bccd_ip, helo=ascii(hostname[:100]))
            await self.push(str(R.BAD_HELO))
            return False
        return True

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if await self._check_helo(hostname):
            await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._check_helo(hostname):
            self.command_size_limits.clear()
            await super().smtp_EHLO(hostname)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path of MAIL FROM / RCPT TO: the everyday shape read by ``paths``, anything
        else by aiosmtpd's own parser (same addresses, same replies)."""
        found = paths.simple_path(arg) if arg else None
        if found is None:
            return super()._getaddr(arg)
        address, rest = found
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if self.bccd_state.closing:
            self.goodbye(R.SHUTTING_DOWN)
            return
        await super().smtp_MAIL(arg)

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        if not self.bccd_trusted:
            log.info("xforward_refused", client=self.bccd_ip)
            await self.push(str(R.XFORWARD_DENIED))
            return
        if await self.check_helo_needed("EHLO"):
            return
        assert isinstance(self.session, BccdSession) and self.envelope is not None
        if self.envelope.mail_from:
            await self.push(str(R.XFORWARD_IN_TRANSACTION))
            return
        try:
            attrs = guard.parse_xforward(arg or "")
        except ValueError as exc:
            log.info("xforward_invalid", client=self.bccd_ip, reason=str(exc))
            await self.push(str(R.XFORWARD_SYNTAX))
            return
        xf = dict(self.session.bccd_xforward)
        xf.update(attrs)
        self.session.bccd_xforward = {k: v for k, v in xf.items() if v}
        await self.push(str(R.XFORWARD_OK))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self.bccd_phase = "data"
        self.bccd_wire = guard.WireScanner()
        # bytes a client sent before our 354 are already in the reader (aiosmtpd itself
        # reaches into the buffer the same way after STARTTLS)
        self.bccd_wire.feed(bytes(self._reader._buffer))  # type: ignore[attr-defined]
        self.bccd_data_left = float(self.bccd_limits.timeout)
        self.bccd_data_last = self.loop.time()
        try:
            await super().smtp_DATA(arg)
        finally:
            self.bccd_phase = "idle"
            self.bccd_state.changed.set()
        if self.bccd_deadline_hit:
            self.goodbye(R.SESSION_TOO_LONG)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command != "DATA":
            return await super()._call_handler_hook(command, *args)
        # the message is in: filing has its own budgets (parse, auth), no idle timer
        self.bccd_phase = "processing"
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            self.bccd_phase = "idle"
            self._reset_timeout()


class BccdLMTP(BccdSMTP):
    """LMTP (RFC 2033) for deployment behind an MTA: LHLO, one reply per recipient."""

    bccd_lmtp = True

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, hostname: str) -> None:
        await BccdSMTP.smtp_EHLO(self, hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        await self.push(str(R.LMTP_NEEDS_LHLO))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self.push(str(R.LMTP_NEEDS_LHLO))

    async def push(self, status: Any) -> None:
        # a refusal of the whole DATA (too big, line too long) is one reply per recipient
        if (isinstance(status, str) and self.bccd_phase == "data" and status[:1] in "45"
                and self.envelope is not None and len(self.envelope.rcpt_tos) > 1):
            status = "\r\n".join([status] * len(self.envelope.rcpt_tos))
        await super().push(status)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context (TLS 1.2 at least), or ``None`` without a certificate. Blocking."""
    if not settings.smtp.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.smtp.tls_cert, settings.smtp.tls_key or None)
    return ctx


class SmtpService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.handler = Handler(settings)
        self.hostname = settings.hostname  # resolved once (getfqdn may ask DNS)
        self.state: _State | None = None
        self.server: asyncio.base_events.Server | None = None
        self.tls = tls_context(settings)

    def _factory(self) -> BccdSMTP:
        s = self.settings.smtp
        assert self.state is not None
        cls = BccdLMTP if s.lmtp else BccdSMTP
        return cls(
            self.handler,
            state=self.state,
            data_size_limit=s.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="bccd LMTP" if s.lmtp else "bccd ESMTP",
            tls_context=self.tls,
            timeout=s.timeout,
            command_call_limit=s.command_call_limit,
            loop=asyncio.get_running_loop(),
        )

    def attach(self, delivery: Delivery) -> None:
        """The ingest path is ready: RCPT (waiting or new) and DATA go through it."""
        self.handler.attach(delivery)

    def unavailable(self) -> None:
        """The ingest path will not be ready (stopping, or start-up failed)."""
        self.handler.unavailable()

    def listening(self) -> bool:
        return self.server is not None and self.server.is_serving()

    async def start(self, sock: socket.socket | None = None, *, reuse_port: bool = False) -> None:
        """Listen on ``sock`` (inherited) or bind ``smtp.listen``; ``reuse_port`` (several
        SMTP processes, ``bccd.smtp.workers``) binds with ``SO_REUSEPORT`` so the kernel
        spreads new connections over the processes bound to the same address."""
        self.state = _State(self.settings)
        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await loop.create_server(self._factory, sock=sock)
            name = sock.getsockname()
            address = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
            log.info("smtp_listening", address=address, lmtp=self.settings.smtp.lmtp,
                     inherited=True)
            return
        host, port = self.settings.smtp.host_port
        self.server = await loop.create_server(self._factory, host=host, port=port,
                                               reuse_address=True, reuse_port=reuse_port or None)
        log.info("smtp_listening", address=f"{host}:{port}", lmtp=self.settings.smtp.lmtp)

    async def reload_tls(self) -> bool:
        """Load the certificate and key again (SIGHUP); new connections get the new ones."""
        if not self.settings.smtp.tls_cert:
            return False
        loop = asyncio.get_running_loop()
        try:
            ctx = await loop.run_in_executor(None, tls_context, self.settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("tls_reload_failed", cert=self.settings.smtp.tls_cert, error=str(exc),
                      detail="the previous certificate stays in use")
            return False
        self.tls = ctx
        log.info("tls_reloaded", cert=self.settings.smtp.tls_cert)
        return True

    async def stop(self, drain_seconds: float) -> None:
        """Refuse new work (421 4.3.2), let transactions in flight finish, then close."""
        st = self.state
        if st is None:
            return
        st.closing = True
        self.handler.unavailable()  # a RCPT still waiting for the ingest path: 421 4.3.2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        log.info("smtp_draining", transactions=st.busy(), connections=st.total)
        while True:
            st.changed.clear()
            left = deadline - loop.time()
            if not st.busy() or left <= 0:
                break
            try:
                await asyncio.wait_for(st.changed.wait(), left)
            except TimeoutError:
                break
        if self.server is not None:
            self.server.close()
        unfinished = st.busy()
        for proto in list(st.protocols):
            proto.goodbye(R.SHUTTING_DOWN)
        log.info("smtp_stopped", unfinished=unfinished)
        if self.server is not None:
            await self.server.wait_closed()
