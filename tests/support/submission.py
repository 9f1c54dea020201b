"""A private Postfix submission service for tests: the SMTP server of the user's own mailbox.

``Submission(dovecot, relay_port)`` (Debian ``postfix``, run as root like
``reliability_postfix.PostfixRelay``: its own config, queue and data directories under a
fresh ``/tmp/bccd-submission-*``, its own ``syslog_name`` and ports, so it runs beside
any other Postfix) listens on ``127.0.0.1``:

- :attr:`port` — submission with STARTTLS (certificate for ``127.0.0.1``/``localhost``
  from a ``trustme`` CA, file :attr:`ca_file`, :meth:`ssl_context`); AUTH is offered only
  after STARTTLS (``smtpd_tls_auth_only``), as real providers do;
- :attr:`smtps_port` — the same with implicit TLS (465-style), unless ``smtps=False``.

AUTH goes to the test Dovecot (``smtpd_sasl_type = dovecot``, ``smtpd_sasl_path`` = its
:attr:`~tests.support.dovecot.Dovecot.sasl_socket_path`, so the Dovecot must be made with
``sasl_socket=True``): PLAIN/LOGIN with the Dovecot user's password, and — when that
Dovecot has ``oauth_introspection_url`` — XOAUTH2/OAUTHBEARER with an access token of
``tests/support/oauth_provider.py``. Nothing is accepted without AUTH.

What it can simulate:

- **the provider refused our sender**: with ``sender_login_check=True`` (default)
  ``reject_sender_login_mismatch``: a login owns its own address (Dovecot users named
  like addresses) plus what :meth:`allow_sender` adds; any other envelope sender is
  refused ``553 5.7.1 <…>: Sender address rejected: not owned by user …`` (at the first
  RCPT, Postfix's ``smtpd_delay_reject``);
- **a recipient refused** at RCPT: :meth:`refuse` (``550 5.1.1 …``, permanent) or
  :meth:`defer` (``450 4.…``, temporary) for an address or a whole domain; the text
  reaches the client as ``<rcpt>: Recipient address rejected: <text>``; effective at
  once (the maps are a ``socketmap`` served from this process); :meth:`clear_refusals`;
- **a real DSN** (RFC 3464 ``multipart/report; report-type=delivery-status``, written
  by Postfix's bounce daemon): mail to any address ``@`` :data:`UNDELIVERABLE_DOMAIN`
  is accepted, then relayed to that domain's "MX" — :attr:`remote_mx`, a
  ``CaptureSmtp`` on loopback that refuses every recipient with ``undeliverable_reply``
  (``550 5.1.1 …``) — so Postfix bounces it to the envelope sender, the way most real
  bounces come about (``Remote-MTA``, ``Diagnostic-Code: smtp; 550 5.1.1 …``).
  (Not ``error:`` in ``transport_maps``: Postfix's smtpd refuses such recipients at RCPT
  time, and no DSN is written.) ``transport={"domain": "nexthop"}`` routes more
  domains. :meth:`bounce_for` returns the bounce bytes for a sent Message-ID,
  :func:`dsn_fields` parses its delivery-status part.

Where accepted mail goes: mail for a domain of a Dovecot user (``alice@mail.test`` →
``mail.test``) is delivered into that user's mailbox (INBOX) by Postfix's ``virtual(8)``
agent, writing the Dovecot Maildir as the ``dovecot`` user — so bounces land in the
sender's INBOX, as at a real provider (``local_delivery=False``: relayed like the rest;
an unknown user of such a domain is ``550 5.1.1 … User unknown``); everything else is
relayed (``relayhost``) to ``127.0.0.1:relay_port`` — a ``CaptureSmtp`` — without TLS.
Postfix prepends its ``Received:`` header (with ``(Authenticated sender: …)``), drops
``Bcc:`` headers and adds a missing ``Message-ID:``/``Date:``; the rest of the message
is relayed byte for byte.

``start()`` makes the queue directories and runs Postfix's ``master -c DIR -w`` (which
returns once the daemon is up; ``postfix start`` would first spend 2-3 s in
``postfix-script`` checks), then waits for the ports: about 0.1 s in all. ``stop()``
sends SIGTERM to the master (PID from ``queue/pid/master.pid``) and waits for it to go
(a zombie counts as gone), then stops the map server and :attr:`remote_mx`; ``log()``
is the instance's mail log; ``queue_empty()``, ``flush()``.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import grp
import os
import pwd
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import trustme

from tests.support.capture_smtp import CaptureSmtp
from tests.support.dovecot import Dovecot
from tests.support.ports import free_port, wait_port

POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
MASTER = "/usr/lib/postfix/sbin/master"
UNDELIVERABLE_DOMAIN = "undeliverable.test"
UNDELIVERABLE_REPLY = "550 5.1.1 The email account that you tried to reach does not exist"

_MASTER = """\
{listen} inet n - n - - smtpd
{smtps}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
  -o virtual_mailbox_maps=texthash:{mailboxes} -o max_use=1
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> bool:
    """Postfix installed and we are root (Postfix's master must start as root)."""
    return Path(MASTER).exists() and os.geteuid() == 0


# ---------------------------------------------------------------- socketmap server


class _Maps(socketserver.ThreadingTCPServer):
    """Postfix ``socketmap:inet:127.0.0.1:<port>:<name>`` lookups (netstrings: request
    ``<name> <key>``, answer ``OK <value>`` or ``NOTFOUND ``), answered by ``owner``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: Submission) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", free_port()), _MapHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _MapHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buf = b""
        while True:
            while b":" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, rest = buf.split(b":", 1)
            size = int(head)
            while len(rest) < size + 1:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                rest += chunk
            query, buf = rest[:size].decode("utf-8", "replace"), rest[size + 1:]
            name, _, key = query.partition(" ")
            server: _Maps = self.server  # type: ignore[assignment]
            value = server.owner._lookup(name, key)
            answer = (f"OK {value}" if value is not None else "NOTFOUND ").encode()
            sock.sendall(str(len(answer)).encode() + b":" + answer + b",")


# ---------------------------------------------------------------- the submission server


class Submission:
    def __init__(
        self,
        dovecot: Dovecot,
        relay_port: int,
        *,
        smtps: bool = True,
        sender_login_check: bool = True,
        local_delivery: bool = True,
        transport: dict[str, str] | None = None,
        hostname: str = "smtp.mail.test",
        undeliverable_reply: str = UNDELIVERABLE_REPLY,
        extra_main: dict[str, str] | None = None,
    ) -> None:
        if not dovecot.sasl_socket:
            raise ValueError("the Dovecot needs sasl_socket=True")
        self.dovecot = dovecot
        self.relay_port = relay_port
        self.sender_login_check = sender_login_check
        self.local_delivery = local_delivery
        self.hostname = hostname
        self.host = "127.0.0.1"
        self.port = free_port()
        self.smtps_port = free_port() if smtps else None
        self.root = Path(tempfile.mkdtemp(prefix="bccd-submission-"))
        os.chmod(self.root, 0o755)
        self.conf = self.root / "conf"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.log_path = self.root / "postfix.log"
        self.ca = trustme.CA()
        self.ca_file = str(self.root / "ca.pem")
        self.remote_mx = CaptureSmtp(refuse_rcpt=undeliverable_reply)
        self._transport = {UNDELIVERABLE_DOMAIN: f"smtp:[127.0.0.1]:{self.remote_mx.port}", **(transport or {})}
        self._extra_main = extra_main or {}
        self._refusals: dict[str, str] = {}
        self._senders: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._maps: _Maps | None = None
        self._maps_thread: threading.Thread | None = None

    # ------------------------------------------------------------ test controls

    def refuse(self, rcpt: str, reply: str = "550 5.1.1 The email account that you tried to reach does not exist") -> None:
        """``rcpt`` (an address or a domain) is refused at RCPT with ``reply`` (5xx)."""
        if not reply[:1] == "5":
            raise ValueError("refuse() takes a 5xx reply; defer() a 4xx one")
        with self._lock:
            self._refusals[rcpt.lower()] = reply

    def defer(self, rcpt: str, reply: str = "450 4.2.1 The user you are trying to contact is receiving mail too quickly") -> None:
        """``rcpt`` (an address or a domain) is refused temporarily with ``reply`` (4xx)."""
        if not reply[:1] == "4":
            raise ValueError("defer() takes a 4xx reply")
        with self._lock:
            self._refusals[rcpt.lower()] = reply

    def clear_refusals(self) -> None:
        with self._lock:
            self._refusals.clear()

    def allow_sender(self, login: str, address: str) -> None:
        """``login`` may also send as ``address`` (an alias, a verified "send as")."""
        with self._lock:
            self._senders.setdefault(address.lower(), set()).add(login)

    def _lookup(self, name: str, key: str) -> str | None:
        key = key.lower()
        with self._lock:
            if name == "rcpt":
                # Postfix asks a socketmap with the full address only (a "pattern" table):
                # the domain, parent domains and localpart@ fallbacks are ours to do
                local, _, domain = key.rpartition("@")
                labels = domain.split(".")
                for candidate in [key, *(".".join(labels[i:]) for i in range(len(labels))), f"{local}@"]:
                    if candidate in self._refusals:
                        return self._refusals[candidate]
                return None
            if name == "senders":
                owners = set(self._senders.get(key, ()))
                if key in (u.lower() for u in list(self.dovecot.users)):
                    owners.add(key)
                return ",".join(sorted(owners)) or None
        users = [u.lower() for u in list(self.dovecot.users) if "@" in u]
        if name == "domains":
            if any(u.endswith("@" + key) for u in users):
                # the address is about to be queued for virtual(8): bring its map up to date
                self._write_mailboxes()
                return "OK"
            return None
        if name == "mailbox":
            return f"{key}/Maildir/" if key in users else None
        return None

    # ------------------------------------------------------------ config

    def _write_config(self) -> None:
        for d in (self.conf, self.queue, self.data):
            d.mkdir(exist_ok=True)
        cert = self.ca.issue_cert("127.0.0.1", "localhost", self.hostname)
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.conf / "smtpd.pem"))
        os.chmod(self.conf / "smtpd.pem", 0o600)
        self.ca.cert_pem.write_to_path(self.ca_file)
        assert self._maps is not None
        sm = f"socketmap:inet:127.0.0.1:{self._maps.port}"
        mail = pwd.getpwnam("dovecot")
        _write_old(self.conf / "transport", "".join(f"{k} {v}\n" for k, v in self._transport.items()))
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.hostname.split(".", 1)[-1],
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": "/tmp",
            "syslog_name": f"bccd-submission-{self.port}",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_tls_security_level": "none",
            "transport_maps": f"texthash:{self.conf / 'transport'}",
            # TLS: STARTTLS on the submission port, AUTH only after it
            "smtpd_tls_chain_files": str(self.conf / "smtpd.pem"),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            "smtpd_tls_loglevel": "1",
            # SASL through the test Dovecot
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": self.dovecot.sasl_socket_path,
            "smtpd_sasl_authenticated_header": "yes",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_tls_security_options": "noanonymous",
            "broken_sasl_auth_clients": "no",
            # nothing without AUTH; scripted refusals; who may send as whom
            "smtpd_client_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": f"check_recipient_access {sm}:rcpt, permit_sasl_authenticated, reject",
            "smtpd_sender_login_maps": f"{sm}:senders",
            "smtpd_sender_restrictions": "reject_sender_login_mismatch" if self.sender_login_check else "",
            # the mailbox domains: Postfix's virtual(8) writes Dovecot's Maildirs
            "virtual_mailbox_domains": f"{sm}:domains" if self.local_delivery else "",
            "virtual_mailbox_maps": f"{sm}:mailbox",
            "virtual_mailbox_base": str(self.dovecot.dir / "mail"),
            "virtual_uid_maps": f"static:{mail.pw_uid}",
            "virtual_gid_maps": f"static:{mail.pw_gid}",
            "virtual_minimum_uid": "1",
            # fast retries and prompt bounces for tests
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "smtpd_error_sleep_time": "0",
            **self._extra_main,
        }
        _write_old(self.conf / "main.cf", "".join(f"{k} = {v}\n" for k, v in main.items()))
        smtps = ""
        if self.smtps_port is not None:
            smtps = f"127.0.0.1:{self.smtps_port} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n"
        self._write_mailboxes()
        _write_old(self.conf / "master.cf", _MASTER.format(listen=f"127.0.0.1:{self.port}", smtps=smtps,
                                                           mailboxes=self.conf / "mailboxes"))

    def _write_mailboxes(self) -> None:
        """virtual(8) refuses network maps such as ``socketmap`` for the mailbox paths
        ("security-sensitive data"), so it gets a ``texthash`` file, rewritten whenever
        Postfix resolves one of the mailbox domains, and runs with ``max_use=1`` (a fresh
        process, which reads the file again, for every delivery)."""
        users = sorted({u.lower() for u in list(self.dovecot.users) if "@" in u})
        with self._lock:
            tmp = self.conf / "mailboxes.tmp"
            _write_old(tmp, "".join(f"{u} {u}/Maildir/\n" for u in users))
            tmp.replace(self.conf / "mailboxes")

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Submission:
        self.remote_mx.start()
        self._maps = _Maps(self)
        self._maps_thread = threading.Thread(target=self._maps.serve_forever, kwargs={"poll_interval": 0.1},
                                             daemon=True, name=f"submission-maps-{self.port}")
        self._maps_thread.start()
        try:
            self._write_config()
            self._make_queue()
            # master -w: returns once the daemon is up. ``postfix start`` would do the same
            # after ``postfix-script``'s checks, which take 2-3 s of the 2 cores here.
            r = subprocess.run([MASTER, "-c", str(self.conf), "-w"], capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"postfix master failed to start: {r.stderr}{self.log()}")
            wait_port(self.port, 30, name="postfix submission")
            if self.smtps_port is not None:
                wait_port(self.smtps_port, 30, name="postfix smtps")
        except Exception:
            self.stop()
            raise
        return self

    def _make_queue(self) -> None:
        """The queue directories, with the owners and modes of Postfix's ``postfix-files``
        (what ``post-install create-missing`` would make)."""
        owner = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        for name in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
                     "private", "saved", "trace", "maildrop", "public", "pid"):
            d = self.queue / name
            d.mkdir(exist_ok=True)
            if name == "pid":
                os.chmod(d, 0o755)
                continue
            gid = postdrop if name in ("maildrop", "public") else owner.pw_gid
            os.chown(d, owner.pw_uid, gid)
            os.chmod(d, {"maildrop": 0o730, "public": 0o710}.get(name, 0o700))
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        os.chmod(self.data, 0o700)

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.master_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _running(pid):
                time.sleep(0.02)
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._maps is not None:
            self._maps.shutdown()
            self._maps.server_close()
            self._maps = None
        if self._maps_thread is not None:
            self._maps_thread.join(5)
            self._maps_thread = None
        self.remote_mx.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Submission:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (and checks the host name)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def queue_empty(self) -> bool:
        r = subprocess.run([POSTQUEUE, "-c", str(self.conf), "-p"], capture_output=True, text=True, timeout=30)
        return "Mail queue is empty" in r.stdout

    def flush(self) -> None:
        subprocess.run([POSTQUEUE, "-c", str(self.conf), "-f"], capture_output=True, timeout=30)

    # ------------------------------------------------------------ bounces

    def bounce_for(self, message_id: str, *, capture: CaptureSmtp | None = None,
                   users: Iterable[str] | None = None, timeout: float = 15.0) -> bytes:
        """The DSN Postfix wrote for the message with ``message_id`` (raw bytes): looked for
        in ``capture`` (bounces relayed out) and in the INBOX of ``users`` (default: every
        address-style Dovecot user — bounces delivered locally). AssertionError on timeout."""
        needle = message_id.strip().encode()
        deadline = time.monotonic() + timeout
        while True:
            candidates: list[bytes] = []
            if capture is not None:
                candidates += [m.data for m in list(capture.messages) if m.mail_from in ("", "<>")]
            if self.local_delivery:
                for user in (users if users is not None else [u for u in list(self.dovecot.users) if "@" in u]):
                    candidates += self.dovecot.fetch_all(user)
            for raw in candidates:
                if needle in raw and _is_dsn(raw):
                    return raw
            if time.monotonic() > deadline:
                raise AssertionError(f"no bounce for {message_id} after {timeout}s\n{self.log()[-4000:]}")
            time.sleep(0.2)


def _running(pid: int) -> bool:
    """Alive and not a zombie: the master is not our child, and PID 1 here may take a
    second or two to reap it (a zombie holds no ports)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _write_old(path: Path, text: str) -> None:
    """Write a file Postfix reads, dated a minute back: Postfix re-reads a config or table
    file changed within the last second, every 300 ms, until it is a second old — 1.5 s
    for every start, and for every virtual(8) delivery after the mailbox map changed."""
    path.write_text(text)
    past = time.time() - 60
    os.utime(path, (past, past))


def _is_dsn(raw: bytes) -> bool:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"


def dsn_fields(raw: bytes) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The per-message and per-recipient fields of a DSN's ``message/delivery-status`` part
    (RFC 3464), e.g. ``({"Reporting-MTA": "dns; smtp.mail.test", …},
    [{"Final-Recipient": "rfc822; x@undeliverable.test", "Action": "failed",
    "Status": "5.1.1", "Diagnostic-Code": "smtp; 550 5.1.1 …"}])``."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            assert isinstance(blocks, list)
            fields = [{k: " ".join(str(v).split()) for k, v in b.items()}
                      for b in blocks if isinstance(b, email.message.Message)]
            return fields[0], fields[1:]
    raise ValueError("no message/delivery-status part")
