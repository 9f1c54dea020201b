"""IMAP initial sync: ``bccd imap sync --once`` against ``mbsync`` (Debian ``isync``), on
the same Dovecot mailbox in the same run.

A private Dovecot (``tests.support.dovecot``) gets one user whose INBOX holds
``--messages`` distinct messages (about 4 KB, one thread in five a reply), written
straight into its maildir before anyone logs in — APPENDing them one by one would take
longer than the measurement. The index is built by one SELECT before either client runs.
Then, each over implicit TLS:

- ``mbsync`` pulls INBOX into an empty local maildir (``Sync Pull``, ``Create Near``);
- ``bccd imap sync --once`` (the CLI, as an operator runs it) syncs the account into an
  empty SQLite database — parse, link and durably commit every message.

Both run ``--repeat`` times (default 3), alternating, each time into an empty maildir /
database: a single run of either varies by a factor of two on a shared machine (mbsync
fsyncs every message). Prints every run, the median messages/s of each, and the ratio of
the medians bccd/mbsync.

    .venv/bin/python -m bench.imap [--messages 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.dovecot import Dovecot
from tests.support.mail import make_message
from tests.support.server import write_config

USER = "bench"
PASSWORD = "bench-secret"
FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 60


class BenchDovecot(Dovecot):
    """The test Dovecot, with a server certificate that also has a common name: mbsync
    (isync 1.4) insists on one."""

    def _write_config(self) -> Path:
        path = super()._write_config()
        cert = self.ca.issue_cert("127.0.0.1", "localhost", common_name="127.0.0.1")
        cert.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        return path


def fill_maildir(dove: Dovecot, n: int) -> None:
    maildir = dove.dir / "mail" / USER / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    for i in range(n):
        parent = f"<m{i - 1}@client.test>" if i % 5 else None
        raw = make_message(frm=f"Customer {i % 50} <customer{i % 50}@client{i % 7}.test>",
                           to="Alice <alice@corp.test>", subject=f"Order {i}",
                           message_id=f"<m{i}@client.test>", in_reply_to=parent,
                           references=parent, body=FILLER)
        (maildir / "cur" / f"{now}.M{i}P1.bench,S={len(raw)}:2,S").write_bytes(raw)
    pw = pwd.getpwnam(dove._identities()["mail"])
    for root, dirs, files in os.walk(dove.dir / "mail"):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    os.chown(dove.dir / "mail", pw.pw_uid, pw.pw_gid)


def run_mbsync(dove: Dovecot, work: Path) -> float:
    work.mkdir()
    local = work / "mbsync-maildir"
    local.mkdir()
    conf = work / "mbsyncrc"
    conf.write_text(f"""IMAPAccount bench
Host 127.0.0.1
Port {dove.ssl_port}
User {USER}
Pass {PASSWORD}
TLSType IMAPS
CertificateFile {dove.ca_file}

IMAPStore remote
Account bench

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Sync Pull
Create Near
SyncState *
""")
    t0 = time.perf_counter()
    r = subprocess.run(["mbsync", "-q", "-c", str(conf), "bench"], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        # isync < 1.4 spells TLSType as SSLType
        conf.write_text(conf.read_text().replace("TLSType IMAPS", "SSLType IMAPS"))
        shutil.rmtree(local)
        local.mkdir()
        t0 = time.perf_counter()
        r = subprocess.run(["mbsync", "-q", "-c", str(conf), "bench"], capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"mbsync failed: {r.stderr.strip()}")
    got = sum(1 for _ in (local / "INBOX" / "cur").iterdir()) + \
        sum(1 for _ in (local / "INBOX" / "new").iterdir())
    return got / elapsed


def run_bccd(dove: Dovecot, work: Path, n: int) -> float:
    work.mkdir()
    cfg = work / "bccd.toml"
    write_config(cfg, {
        "storage": {"data_dir": str(work / "var")},
        "auth": {"mode": "off"},
        "imap": {"initial_days": 0},
        "log": {"format": "json", "level": "info"},  # bccd's default: a line per message
    })
    env = {**os.environ, "BENCH_IMAP_PASSWORD": PASSWORD}

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "bccd", "--config", str(cfg), *args],
                           cwd=work, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"bccd {' '.join(args)}: {r.stderr.strip()[-2000:]}")
        return r.stdout

    cli("company", "create", "Corp", "--slug", "corp")
    cli("user", "create", "alice@corp.test", "--company", "corp")
    cli("imap", "add", "alice@corp.test", "--host", "127.0.0.1", "--port", str(dove.ssl_port),
        "--security", "ssl", "--username", USER, "--password-env", "BENCH_IMAP_PASSWORD",
        "--ca-file", dove.ca_file, "--folders", "INBOX")
    t0 = time.perf_counter()
    cli("imap", "sync", "--once")
    elapsed = time.perf_counter() - t0
    import sqlite3

    con = sqlite3.connect(work / "var" / "bccd.sqlite3")
    try:
        stored = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        con.close()
    if stored != n:
        print(f"  warning: bccd stored {stored} of {n} messages", flush=True)
    return int(stored) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("mbsync") is None:
        print("  mbsync not installed (apt-get install isync): skipped")
        return
    work = Path(tempfile.mkdtemp(prefix="bccd-bench-imap-"))
    dove = BenchDovecot()
    try:
        dove.start()
        dove.add_user(USER, PASSWORD)
        fill_maildir(dove, args.messages)  # before the first login: nothing indexed yet
        with dove.client(USER) as c:  # build Dovecot's index once, for both clients
            c.select_folder("INBOX", readonly=True)
        mbs, bcs = [], []
        for i in range(args.repeat):
            mbs.append(run_mbsync(dove, work / f"mbsync-{i}"))
            bcs.append(run_bccd(dove, work / f"bccd-{i}", args.messages))
            print(f"  run {i + 1}: mbsync {mbs[-1]:7.1f}, bccd {bcs[-1]:7.1f} messages/s",
                  flush=True)
        mb, bc = statistics.median(mbs), statistics.median(bcs)
        print(f"  mbsync            {mb:8.1f} messages/s (median of {args.repeat})", flush=True)
        print(f"  bccd imap sync    {bc:8.1f} messages/s (parsed, linked, committed; median)",
              flush=True)
        print(f"  ratio bccd/mbsync: {bc / mb:.2f}", flush=True)
    finally:
        dove.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
