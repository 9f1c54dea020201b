"""A private Dovecot IMAP server for tests (Debian ``dovecot-imapd``), loopback only.

``Dovecot(root).start()`` writes a ``dovecot.conf`` under its own directory: listens on
127.0.0.1 only — implicit TLS (``ssl_port``) with a certificate issued by a ``trustme``
CA (``ca_file``) and STARTTLS on the plain port (``port``) — ``ssl_min_protocol =
TLSv1.2``, a ``passwd-file`` passdb (one file per user, so users can be added at any time
with :meth:`add_user`), maildir storage, SPECIAL-USE folders ``Sent``,
``Archive``, ``Trash``, ``Junk`` (and ``All`` flagged ``\\All`` when ``all_folder=True``,
a plain mailbox — no virtual plugin), ``extra_conf`` appended verbatim (e.g. an
``imap_capability`` without MOVE), and optionally an ``oauth2`` passdb (XOAUTH2 and
OAUTHBEARER) that asks ``oauth_introspection_url`` (see ``tests/support/oauth.py``).

It then runs ``dovecot -F -c dovecot.conf`` as a child process, waits for both ports and
:meth:`stop` ends it by PID. Running as root in a sandbox: Dovecot refuses to run
``imap-login`` as root and refuses root as a mail user, so the login processes run as
``dovenull`` and mail is accessed as ``dovecot`` (both created by the Debian package);
as a normal user everything runs as that user.

``sasl_socket=True`` adds an authentication socket for Postfix's ``smtpd_sasl_type =
dovecot`` (``service auth { unix_listener … }``) at :attr:`sasl_socket_path`: owned by
``postfix:postfix`` mode 0660 when running as root (Postfix's ``smtpd`` runs as
``postfix``), mode 0666 otherwise; the same passdbs answer there (PLAIN/LOGIN with the
user's password, XOAUTH2/OAUTHBEARER with an access token) — see
``tests/support/submission.py``.

User names may be plain (``alice``) or addresses (``alice@mail.test``, as a real
provider's logins are, and as the ``username`` an OAuth introspection answers).

Helpers (``imapclient``, as the test user): :meth:`client`, :meth:`append`,
:meth:`uids`, :meth:`flags`, :meth:`delete_folder`, :meth:`create_folder`,
:meth:`fetch_all`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import imapclient
import trustme

from tests.support.ports import free_port, wait_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
# a plain name or an address; never a path
_USER = re.compile(r"[A-Za-z0-9_-]+(?:[.+][A-Za-z0-9_-]+)*(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?")


def available() -> bool:
    return os.path.exists(DOVECOT)


class Dovecot:
    def __init__(
        self,
        *,
        all_folder: bool = False,
        oauth_introspection_url: str | None = None,
        extra_conf: str = "",
        tmp_root: str | None = None,
        sasl_socket: bool = False,
    ) -> None:
        # not pytest's tmp_path: its parents are 0700 and dovenull must reach the sockets
        self.dir = Path(tempfile.mkdtemp(prefix="bccd-dovecot-", dir=tmp_root))
        os.chmod(self.dir, 0o755)
        self.all_folder = all_folder
        self.extra_conf = extra_conf
        self.oauth_introspection_url = oauth_introspection_url
        self.port = free_port()
        self.ssl_port = free_port()
        self.host = "127.0.0.1"
        self.ca = trustme.CA()
        self.ca_file = str(self.dir / "ca.pem")
        self.proc: subprocess.Popen[bytes] | None = None
        self.users: dict[str, str] = {}
        self.sasl_socket = sasl_socket
        self.sasl_socket_path = str(self.dir / "run" / "auth-postfix")  # base_dir/auth-postfix

    # ------------------------------------------------------------ config

    def _identities(self) -> dict[str, str]:
        if os.geteuid() == 0:
            return {"internal": "root", "login": "dovenull", "mail": "dovecot", "first_uid": "1"}
        me = pwd.getpwuid(os.geteuid()).pw_name
        return {"internal": me, "login": me, "mail": me, "first_uid": str(os.geteuid())}

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("run", "state", "mail", "users"):
            (d / sub).mkdir(exist_ok=True)
        ids = self._identities()
        mail_pw = pwd.getpwnam(ids["mail"])
        os.chown(d / "mail", mail_pw.pw_uid, mail_pw.pw_gid)
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        self.ca.cert_pem.write_to_path(self.ca_file)
        mechanisms = "plain login"
        oauth = ""
        if self.oauth_introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            (d / "oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth_introspection_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
                "force_introspection = yes\n"
            )
            oauth = f"""
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}"""
        all_box = (
            "  mailbox All {\n    special_use = \\All\n    auto = subscribe\n  }\n" if self.all_folder else ""
        )
        conf = f"""# generated by tests/support/dovecot.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = bccd-test-{d.name}
listen = 127.0.0.1
protocols = imap
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
default_internal_user = {ids["internal"]}
default_internal_group = {ids["internal"]}
default_login_user = {ids["login"]}
first_valid_uid = {ids["first_uid"]}
mail_uid = {ids["mail"]}
mail_gid = {ids["mail"]}
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = {mechanisms}
disable_plaintext_auth = no
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/users/%u
}}{oauth}
userdb {{
  driver = static
  args = uid={ids["mail"]} gid={ids["mail"]} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
{all_box}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # no growing auth penalty for the wrong-password tests
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        if self.sasl_socket:
            # Postfix's smtpd connects as the postfix user
            owner = "user = postfix\n    group = postfix\n    mode = 0660" if os.geteuid() == 0 else "mode = 0666"
            conf += f"""service auth {{
  unix_listener auth-postfix {{
    {owner}
  }}
}}
"""
        path = d / "dovecot.conf"
        path.write_text(conf + self.extra_conf)
        return path

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Dovecot:
        conf = self._write_config()
        with open(self.dir / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            wait_port(self.port, 15, self.proc, "dovecot")
            wait_port(self.ssl_port, 15, self.proc, "dovecot")
            if self.sasl_socket:
                deadline = time.monotonic() + 15
                while not os.path.exists(self.sasl_socket_path):
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("no auth socket")
                    time.sleep(0.05)
        except Exception:
            self.stop()
            raise RuntimeError(f"dovecot failed to start:\n{self.log()}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        out = []
        for name in ("dovecot.log", "stderr.log"):
            with contextlib.suppress(OSError):
                out.append((self.dir / name).read_text(errors="replace"))
        return "\n".join(out)

    # ------------------------------------------------------------ users & mail

    def add_user(self, name: str, password: str = "secret") -> str:
        if name in self.users or not _USER.fullmatch(name):
            raise ValueError(f"bad or duplicate test user {name!r}")
        self.users[name] = password
        # one passwd-file per user: Dovecot re-reads a changed file at most once a second,
        # a new file is read at once
        (self.dir / "users" / name).write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        return name

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    @contextlib.contextmanager
    def client(self, user: str) -> Iterator[imapclient.IMAPClient]:
        c = imapclient.IMAPClient(
            self.host, port=self.ssl_port, ssl=True, ssl_context=self.ssl_context(), timeout=10
        )
        try:
            c.login(user, self.users[user])
            yield c
        finally:
            with contextlib.suppress(Exception):
                c.logout()

    def append(
        self,
        user: str,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: Sequence[str] = (),
        date: dt.datetime | None = None,
    ) -> int:
        """APPEND one message; returns its UID (UIDPLUS APPENDUID)."""
        with self.client(user) as c:
            resp = c.append(folder, raw, flags=tuple(flags), msg_time=date)
        # b'[APPENDUID <uidvalidity> <uid>] Append completed.'
        text = resp.decode() if isinstance(resp, bytes) else str(resp)
        return int(text.split("]")[0].split()[-1])

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            return sorted(int(u) for u in c.search(["NOT", "DELETED"]))

    def message_ids(self, user: str, folder: str = "INBOX") -> list[str]:
        """Message-IDs of every message in ``folder`` (including ones flagged \\Deleted)."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        out = []
        for item in data.values():
            hdr = next(v for k, v in item.items() if k.startswith(b"BODY["))
            out.append(hdr.decode().split(":", 1)[1].strip())
        return sorted(out)

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[Any, ...]]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            return {int(k): tuple(v[b"FLAGS"]) for k, v in c.fetch(uids, ["FLAGS"]).items()} if uids else {}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def fetch_all(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message in ``folder`` (raw bytes, UID order)."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[]"])
        return [data[u][b"BODY[]"] for u in sorted(data)]

    def delete_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            c.delete_folder(folder)

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            c.create_folder(folder)
