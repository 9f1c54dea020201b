"""A private Postfix instance in front of bccd, for the reliability tests.

``PostfixRelay(bcc_domain, lmtp_port, snippets=REPO/conf/postfix, extra_main={...})``
writes ``main.cf``/``master.cf`` into its own directory (config, queue and data
directories all private, under a fresh ``/tmp/bccd-postfix-*``):

* the base: ``inet_interfaces = loopback-only``, IPv4, an ``smtpd`` on
  ``127.0.0.1:<smtp_port>`` (a free port), no local delivery, logging to ``postfix.log``;
* then bccd's deployment snippet, exactly as shipped in ``conf/postfix/`` with only the
  example names replaced (``bcc.example.com`` → the Bcc domain, ``127.0.0.1:2525`` → the
  bccd listener): ``main.cf`` and ``master.cf`` appended, ``transport`` compiled with
  ``postmap``;
* then ``extra_main`` (e.g. short retry timers), which wins as Postfix takes the last value.

``start()`` runs ``postfix -c DIR start`` and waits for the port; ``stop()`` sends SIGTERM
to the master process (its PID from ``queue/pid/master.pid``) and waits for it to go;
``queue_empty()`` asks ``postqueue -p``; ``log()`` is the instance's mail log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.server import REPO, free_port, wait_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
SNIPPETS = REPO / "conf" / "postfix"

_MASTER = """\
{smtp_listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> bool:
    return Path(POSTFIX).exists() and Path(POSTMAP).exists()


class PostfixRelay:
    def __init__(self, bcc_domain: str, lmtp_port: int, *, extra_main: dict[str, str] | None = None,
                 snippets: Path = SNIPPETS) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bccd-postfix-"))
        os.chmod(self.root, 0o755)
        self.conf = self.root / "conf"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        for d in (self.conf, self.queue, self.data):
            d.mkdir()
        shutil.chown(self.data, "postfix")
        self.smtp_port = free_port()
        self.log_path = self.root / "postfix.log"

        def fill(text: str) -> str:
            return (text.replace("bcc.example.com", bcc_domain)
                    .replace("127.0.0.1:2525", f"127.0.0.1:{lmtp_port}")
                    .replace("/etc/postfix/", f"{self.conf}/"))

        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "relay.test",
            "mydomain": "relay.test",
            "myorigin": "relay.test",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": "/tmp",
            "syslog_name": f"bccd-test-postfix-{self.smtp_port}",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
        }
        main = "\n".join(f"{k} = {v}" for k, v in base.items()) + "\n\n"
        main += fill((snippets / "main.cf").read_text()) + "\n"
        main += "\n".join(f"{k} = {v}" for k, v in (extra_main or {}).items()) + "\n"
        (self.conf / "main.cf").write_text(main)
        master = _MASTER.format(smtp_listen=f"127.0.0.1:{self.smtp_port}")
        master += fill((snippets / "master.cf").read_text())
        (self.conf / "master.cf").write_text(master)
        (self.conf / "transport").write_text(fill((snippets / "transport").read_text()))
        subprocess.run([POSTMAP, "-c", str(self.conf), f"hash:{self.conf / 'transport'}"], check=True,
                       timeout=30)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True, text=True,
                              timeout=60)

    def start(self) -> None:
        r = self._postfix("check")
        if r.returncode != 0:
            raise RuntimeError(f"postfix check failed: {r.stderr}{self.log()}")
        r = self._postfix("start")
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stderr}{self.log()}")
        wait_port(self.smtp_port, 30)

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
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def queue_empty(self) -> bool:
        r = subprocess.run([POSTQUEUE, "-c", str(self.conf), "-p"], capture_output=True, text=True,
                           timeout=30)
        return "Mail queue is empty" in r.stdout

    def flush(self) -> None:
        subprocess.run([POSTQUEUE, "-c", str(self.conf), "-f"], capture_output=True, timeout=30)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""
