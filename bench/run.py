"""``make bench`` — bccd against a bare aiosmtpd sink, in one invocation on one machine.

Each server runs as its own process on loopback and is loaded by the same asyncio load
generator (``bench.load``): ``--concurrency`` sessions (default 20), each reusing its
connection, with DKIM-signed messages whose key, SPF and DMARC records come from a
loopback DNS server. Every server first gets ``WARMUP`` messages that are not counted
(imports, caches, connection pools), then ``--n`` messages.

  (a) sink      bare aiosmtpd answering 250 to everything (the baseline)
  (b) sqlite    ``bccd serve``: DMARC auth, parse, link, durable commit on SQLite
                (WAL, synchronous=FULL), logging at ``info``, bccd's default of one
                SMTP process (``--workers`` to change it; the full run adds the same
                with one SMTP process per CPU, ``smtp.workers = 0``, for SQLite and
                PostgreSQL with 4 KB messages: ``sqlite 2proc``, ``postgres 2proc``)
  (c) postgres  the same on PostgreSQL (a private cluster with fsync and synchronous
                commit on — full run only)
  floor         the libraries alone (``bench.floor``): aiosmtpd, dkimpy, pyspf, the email
                parser and a SQLite group commit with none of bccd's logic, one process per
                CPU — the least CPU per message this stack needs (4 KB only, quick run too)

  blobs         PostgreSQL with 50 KB messages carrying one 30 KB attachment, the blobs
                in files (``storage.blobs = "fs"``) and in the database (``"database"``,
                the default with PostgreSQL): what keeping every byte in the database
                costs (full run, or ``--blobs`` alone; ``--repeat`` runs the pair again)

For each: messages/s, p50/p99 latency, the peak RSS of the server (the sum over its
processes: what they hold resident together, shared library pages counted per process),
and its CPU time (user + system, every process) per message of the counted run, and
the load generator's own CPU per message (``client``: it shares the cores);
then (b) again at half of its measured rate, for the p99 at half load. The full run adds
50 KB messages (one attachment each), linking cost at 1,000 vs 1,000,000 persons
(``bench.linking_scale``), what each piece of the performance machinery buys
(``bench.machinery``: the group writer, direct statements, single-flight lookups, each
with and without) and an IMAP initial sync of a 10,000-message Dovecot mailbox
by ``bccd imap sync --once`` and by ``mbsync`` (``bench.imap``). The last two lines:

    cpu/msg: sink X ms, floor Y ms, bccd Z ms (bccd/floor: C)
    ratio full/sink 4KB: R (bccd/floor: F)

— CPU per 4 KB message of (a), the floor and (b), and the throughput of (b) over (a) and
over the floor, each at its default process count.

    .venv/bin/python -m bench.run [--quick | --blobs [--repeat 2]] [--n 2000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.load import LoadResult, run_load
from tests.support.dnsserver import DnsTestServer
from tests.support.server import child_pids, free_port, wait_port, write_config

REPO = Path(__file__).resolve().parents[1]
DOMAIN = "corp.test"
SENDER = f"alice@{DOMAIN}"
WARMUP = 100


def make_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(pub).decode()


_FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2000


def _signed(m: EmailMessage, key: bytes) -> bytes:
    raw = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    sig = dkim.sign(raw, b"bench", DOMAIN.encode(), key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return bytes(sig + raw)


def build_messages(n: int, size: int, key: bytes, tag: str, attachment: int | None = None
                   ) -> list[bytes]:
    """``n`` distinct DKIM-signed messages of about ``size`` bytes each (over 8 KB: a
    short body and one attachment; ``attachment`` fixes its size, the body fills the
    rest), to 50 counterparts at 7 client domains."""
    out = []
    for i in range(n):
        m = EmailMessage()
        m["From"] = f"Alice <{SENDER}>"
        m["To"] = f"Customer {i % 50} <customer{i % 50}@client{i % 7}.test>"
        m["Subject"] = f"Proposal {tag} {i}"
        m["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
        m["Message-ID"] = f"<bench-{tag}-{i}-{os.getpid()}@{DOMAIN}>"
        if attachment is not None:  # base64 makes the attachment 4/3 of its size
            m.set_content(_FILLER[: max(100, size - attachment * 4 // 3 - 1500)] + "\n")
            m.add_attachment(os.urandom(attachment), maintype="application",
                             subtype="octet-stream", filename="quote.bin")
        elif size <= 8192:
            m.set_content(_FILLER[: max(100, size - 1000)] + "\n")
        else:
            m.set_content(_FILLER[:2000] + "\n")
            m.add_attachment(os.urandom((size - 4000) * 3 // 4), maintype="application",
                             subtype="octet-stream", filename="quote.bin")
        out.append(_signed(m, key))
    return out


# ------------------------------------------------------------------ processes
def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        pids += child_pids(pids[i])
        i += 1
    return pids


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) of ``pid`` and its children so far: the live
    processes' own, and what the children already reaped had used (``cutime``/``cstime``
    of the process that waited for them)."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _TICK


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of ``pid`` and its children (VmHWM, summed)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Proc:
    def __init__(self, argv: list[str], cwd: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.log = open(cwd / "server.log", "ab")  # noqa: SIM115
        self.p = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(env or {})})
        wait_port(port, 30, self.p)

    def stop(self) -> float:
        rss = peak_rss_mb(self.p.pid)
        self.p.terminate()
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()
        return rss


def bccd_cli(config: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    r = subprocess.run([sys.executable, "-m", "bccd", "--config", str(config), *args, "--json"],
                       cwd=cwd, capture_output=True, text=True, check=True,
                       env={**os.environ, **(env or {})})
    return json.loads(r.stdout) if r.stdout.strip() else None


def bccd_config(work: Path, dns_port: int, db_url: str | None, workers: int = 1,
                **extra: dict[str, Any]) -> Path:
    cfg = work / "bccd.toml"
    sections: dict[str, dict[str, Any]] = {
        "smtp": {"listen": f"127.0.0.1:{free_port()}", "hostname": "bench.test",
                 "max_connections_per_ip": 1000, "workers": workers},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"data_dir": str(work / "var")},
        "auth": {"mode": "dmarc"},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 2.0},
        "log": {"format": "json", "level": "info"},
    }
    if db_url:
        sections["database"] = {"url": db_url}
    sections.update(extra)
    write_config(cfg, sections)
    if db_url:
        bccd_cli(cfg, work, "db", "upgrade")
    return cfg


def start_bccd(work: Path, dns_port: int, db_url: str | None, workers: int = 1,
               **extra: dict[str, Any]) -> tuple[Proc, int, str]:
    cfg = bccd_config(work, dns_port, db_url, workers, **extra)
    port = int(cfg.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])
    bccd_cli(cfg, work, "company", "create", "Corp", "--slug", "corp")
    user = bccd_cli(cfg, work, "user", "create", SENDER, "--company", "corp", "--name", "Alice")
    proc = Proc([sys.executable, "-m", "bccd", "--config", str(cfg), "serve"], work, port)
    if workers != 1:
        _wait_workers(work / "server.log", proc)
    return proc, port, user["bcc_address"]


def start_pg(work: Path, dns_port: int, pg_admin: str, workers: int,
             **extra: dict[str, Any]) -> tuple[Proc, int, str]:
    """``start_bccd`` on a fresh database of the PostgreSQL cluster ``pg_admin``."""
    from tests.support.pg import fresh_database

    url, _ = fresh_database(pg_admin)
    work.mkdir()
    return start_bccd(work, dns_port, url.replace("postgresql://", "postgresql+psycopg://"),
                      workers, **extra)


BLOBS_SIZE, BLOBS_ATTACHMENT = 51200, 30 * 1024


def measure_blobs(base: Path, dns_port: int, pg_admin: str, pem: bytes, n: int, conc: int,
                  workers: int, repeat: int = 1) -> dict[str, list[LoadResult]]:
    """The ``blobs`` rows: PostgreSQL, 50 KB messages with a 30 KB attachment, the blobs
    in files then in the database (``repeat`` times, alternating), each on a fresh
    database; prints a row per run and the ratio of the two."""
    warm = build_messages(WARMUP, BLOBS_SIZE, pem, "warmblobs", BLOBS_ATTACHMENT)
    out: dict[str, list[LoadResult]] = {"fs": [], "database": []}
    for k in range(repeat):
        for store in ("fs", "database"):
            msgs = build_messages(n, BLOBS_SIZE, pem, f"blobs{store}{k}", BLOBS_ATTACHMENT)
            proc, port, rcpt = start_pg(base / f"pg-blobs-{store}-{k}", dns_port, pg_admin,
                                        workers, storage={"blobs": store})
            r = measure(port, rcpt, warm, msgs, conc, proc=proc)
            out[store].append(r)
            print(row(f"postgres {'db' if store == 'database' else store}", "50+30", r,
                      proc.stop()), flush=True)
    fs_rate = sum(r.rate for r in out["fs"]) / repeat
    db_rate = sum(r.rate for r in out["database"]) / repeat
    fs_p99 = sum(r.pct(99) for r in out["fs"]) / repeat
    db_p99 = sum(r.pct(99) for r in out["database"]) / repeat
    if fs_rate and fs_p99:
        print(f"ratio database/fs (50 KB, 30 KB attachment, PostgreSQL): msgs/s "
              f"{db_rate / fs_rate:.2f}, p99 {db_p99 / fs_p99:.2f}", flush=True)
    return out


def _wait_workers(log: Path, proc: Proc, timeout: float = 30.0) -> None:
    """Until every SMTP worker listens (the primary's socket takes all until then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        want = next((json.loads(line).get("smtp_processes", 1) for line in text.splitlines()
                     if '"bccd_ready"' in line), None)
        if want is not None and text.count('"smtp_worker_ready"') >= want - 1:
            return
        if proc.p.poll() is not None:
            raise RuntimeError(f"bccd serve exited with {proc.p.returncode}")
        time.sleep(0.1)
    raise TimeoutError("SMTP workers not ready")


@contextmanager
def pg_cluster() -> Iterator[str]:
    """A private PostgreSQL with the durability bccd relies on (fsync, synchronous commit
    — the test clusters turn fsync off), or ``BCCD_BENCH_PG_URL`` (an empty database)."""
    from tests.support.pg import cluster

    with cluster({"fsync": "on", "synchronous_commit": "on", "max_connections": "100",
                  "shared_buffers": "128MB"}, env_var="BCCD_BENCH_PG_URL",
                 prefix="bccd-bench-pg-") as url:
        yield url


# ------------------------------------------------------------------ measuring
def run(port: int, msgs: list[bytes], rcpt: str, conc: int, rate: float | None = None) -> LoadResult:
    return asyncio.run(run_load(port, [(SENDER, rcpt, m) for m in msgs], conc, rate))


def measure(port: int, rcpt: str, warm: list[bytes], msgs: list[bytes], conc: int,
            rate: float | None = None, proc: Proc | None = None) -> LoadResult:
    """Warm-up, then the counted run; with ``proc``, the server's CPU seconds during the
    counted run (every process of its tree) in ``cpu``."""
    run(port, warm, rcpt, conc)
    before = cpu_seconds(proc.p.pid) if proc is not None else 0.0
    own = time.process_time()
    r = run(port, msgs, rcpt, conc, rate)
    r.client_cpu = time.process_time() - own
    if proc is not None:
        r.cpu = cpu_seconds(proc.p.pid) - before
    return r


def measure_floor(work: Path, records: dict[str, str], warm: list[bytes], msgs: list[bytes],
                  conc: int, processes: int) -> tuple[LoadResult, float]:
    """``bench.floor`` with ``processes`` processes, answering ``records`` (name → TXT)
    from memory; the result and the peak RSS."""
    work.mkdir()
    (work / "dns.json").write_text(json.dumps(records))
    port = free_port()
    proc = Proc([sys.executable, "-m", "bench.floor", str(port), str(work / "floor.sqlite3"),
                 str(work / "dns.json"), str(processes)], work, port,
                env={"PYTHONPATH": str(REPO)})
    r = measure(port, "x@bcc.localhost", warm, msgs, conc, proc=proc)
    return r, proc.stop()


HEADER = (f"{'server':<14} {'size':>5} {'msgs':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'rss MB':>7} {'cpu/msg':>7} {'client':>6}  replies")


def row(name: str, size: str, r: LoadResult, rss: float) -> str:
    return (f"{name:<14} {size:>5} {r.accepted:>6} {r.rate:>8.1f} {r.pct(50) * 1000:>8.1f} "
            f"{r.pct(99) * 1000:>8.1f} {rss:>7.1f} {r.cpu_per_msg * 1000:>7.2f} "
            f"{r.client_cpu_per_msg * 1000:>6.2f}  "
            f"{dict(sorted(r.replies.items()))}"
            + (f" reconnects={r.reconnects}" if r.reconnects else "")
            + (f" connection errors={r.errors}" if r.errors else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="(a), the floor and (b) with 4 KB messages only")
    ap.add_argument("--n", type=int, default=2000, help="messages per run")
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--imap-messages", type=int, default=10_000)
    ap.add_argument("--blobs", action="store_true",
                    help="only the blobs rows: PostgreSQL, storage.blobs fs vs database")
    ap.add_argument("--repeat", type=int, default=1, help="runs of the blobs pair")
    ap.add_argument("--workers", type=int, default=1,
                    help="smtp.workers for (b) and (c): 1 (bccd's default) or n; 0 = one SMTP "
                         "process per CPU")
    args = ap.parse_args()
    t_start = time.monotonic()
    pem, pub = make_key()
    records = {f"bench._domainkey.{DOMAIN}": f"v=DKIM1; k=rsa; p={pub}",
               DOMAIN: "v=spf1 ip4:127.0.0.1 -all",
               f"_dmarc.{DOMAIN}": "v=DMARC1; p=reject"}
    dns = DnsTestServer().start()
    for name, txt in records.items():
        dns.add_txt(name, txt)
    sizes = [("4KB", 4096)] if args.quick else [("4KB", 4096), ("50KB", 51200)]
    servers = ["sink", "sqlite"] if args.quick else ["sink", "sqlite", "postgres"]
    cpus = len(os.sched_getaffinity(0))
    procs = args.workers or cpus
    print(f"bench: n={args.n} per run (after {WARMUP} warm-up), {args.concurrency} concurrent "
          f"sessions, cpus={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
          f"bccd smtp.workers = {args.workers} ({procs} SMTP process{'es' if procs > 1 else ''})",
          flush=True)
    print(HEADER, flush=True)
    results: dict[tuple[str, str], LoadResult] = {}
    base = Path(tempfile.mkdtemp(prefix="bccd-bench-"))
    if args.blobs:
        try:
            with pg_cluster() as pg_admin:
                measure_blobs(base, dns.port, pg_admin, pem, args.n, args.concurrency,
                              args.workers, args.repeat)
        finally:
            dns.stop()
            shutil.rmtree(base, ignore_errors=True)
        print(f"\n(total {time.monotonic() - t_start:.0f} s)")
        return
    pg: Any = contextlib.nullcontext() if args.quick else pg_cluster()
    try:
        with pg as pg_admin:
            for label, size in sizes:
                warm = build_messages(WARMUP, size, pem, f"warm{label}")
                msgs = {name: build_messages(args.n, size, pem, f"{name}{label}") for name in servers}
                work = base / f"sink-{label}"
                work.mkdir()
                port = free_port()
                sink = Proc([sys.executable, "-m", "bench.sink", str(port)], work, port,
                            env={"PYTHONPATH": str(REPO)})
                r = measure(port, "x@bcc.localhost", warm, msgs["sink"], args.concurrency,
                            proc=sink)
                results[("sink", label)] = r
                print(row("sink", label, r, sink.stop()), flush=True)
                if label == "4KB":
                    r, rss = measure_floor(base / "floor", records, warm,
                                           build_messages(args.n, size, pem, "floor"),
                                           args.concurrency, cpus)
                    results[("floor", label)] = r
                    print(row(f"floor {cpus}proc", label, r, rss), flush=True)

                work = base / f"sqlite-{label}"
                work.mkdir()
                proc, port, rcpt = start_bccd(work, dns.port, None, args.workers)
                r = measure(port, rcpt, warm, msgs["sqlite"], args.concurrency, proc=proc)
                results[("sqlite", label)] = r
                rss = proc.stop()
                print(row("sqlite", label, r, rss), flush=True)
                if not args.quick and label == "4KB" and procs != cpus:
                    # the same with one SMTP process per CPU (smtp.workers = 0)
                    work = base / f"sqlite-np-{label}"
                    work.mkdir()
                    proc, port, rcpt = start_bccd(work, dns.port, None, 0)
                    rn = measure(port, rcpt, warm, build_messages(args.n, size, pem, "percpu"),
                                 args.concurrency, proc=proc)
                    print(row(f"sqlite {cpus}proc", label, rn, proc.stop()), flush=True)
                if label == "4KB" and r.rate > 0:
                    work = base / f"sqlite-half-{label}"
                    work.mkdir()
                    proc, port, rcpt = start_bccd(work, dns.port, None, args.workers)
                    n_half = min(args.n, max(300, int(r.rate / 2 * 15)))  # ~15 s at that rate
                    half = build_messages(n_half, size, pem, "half")
                    rh = measure(port, rcpt, warm, half, args.concurrency, rate=r.rate / 2, proc=proc)
                    results[("sqlite@50%", label)] = rh
                    print(row("sqlite@50%", label, rh, proc.stop()), flush=True)
                if pg_admin is not None:
                    proc, port, rcpt = start_pg(base / f"pg-{label}", dns.port, pg_admin,
                                                args.workers)
                    r = measure(port, rcpt, warm, msgs["postgres"], args.concurrency, proc=proc)
                    results[("postgres", label)] = r
                    print(row("postgres", label, r, proc.stop()), flush=True)
                    if label == "4KB" and procs != cpus:
                        proc, port, rcpt = start_pg(base / f"pg-np-{label}", dns.port, pg_admin, 0)
                        rn = measure(port, rcpt, warm, build_messages(args.n, size, pem, "pgcpu"),
                                     args.concurrency, proc=proc)
                        print(row(f"postgres {cpus}proc", label, rn, proc.stop()), flush=True)
            if pg_admin is not None:
                measure_blobs(base, dns.port, pg_admin, pem, args.n, args.concurrency,
                              args.workers, args.repeat)
        if not args.quick:
            print("\nlinking cost vs company size (bench.linking_scale, SQLite):", flush=True)
            subprocess.run([sys.executable, "-m", "bench.linking_scale"], cwd=REPO, check=False)
            print("\nwhat the performance machinery buys (bench.machinery, SQLite):", flush=True)
            subprocess.run([sys.executable, "-m", "bench.machinery"], cwd=REPO, check=False)
            print(f"\nIMAP initial sync of a {args.imap_messages:,}-message Dovecot mailbox "
                  "(bench.imap):", flush=True)
            subprocess.run([sys.executable, "-m", "bench.imap", "--messages",
                            str(args.imap_messages)], cwd=REPO, check=False)
    finally:
        dns.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n(total {time.monotonic() - t_start:.0f} s)")
    sink4, full4 = results[("sink", "4KB")], results[("sqlite", "4KB")]
    ratio = full4.rate / sink4.rate if sink4.rate else 0.0
    floor4 = results.get(("floor", "4KB"))
    floor_rate = floor4.rate if floor4 is not None else 0.0
    if floor_rate and sink4.rate:
        print(f"ratio floor/sink 4KB: {floor_rate / sink4.rate:.2f}")
    cpu = {name: results[(name, "4KB")].cpu_per_msg * 1000 for name in ("sink", "floor", "sqlite")
           if (name, "4KB") in results}
    print("cpu/msg: " + ", ".join(f"{'bccd' if name == 'sqlite' else name} {ms:.2f} ms"
                                  for name, ms in cpu.items())
          + (f" (bccd/floor: {cpu['sqlite'] / cpu['floor']:.2f})" if cpu.get("floor") else ""))
    print(f"ratio full/sink 4KB: {ratio:.2f} (bccd/floor: "
          f"{full4.rate / floor_rate if floor_rate else 0.0:.2f})")


if __name__ == "__main__":
    main()
