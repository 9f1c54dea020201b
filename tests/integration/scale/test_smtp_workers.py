"""``smtp.workers``: several SMTP processes on one port (``bccd.smtp.workers``).

A real ``bccd serve`` with ``workers = 2`` (the primary and one worker, SO_REUSEPORT):

- mail over many connections is taken by both processes, each message stored once even
  when two copies of it arrive at the same moment on different connections;
- ``/metrics`` on the primary counts what every process accepted;
- a worker killed with SIGKILL is started again and the port keeps taking mail;
- SIGTERM stops the workers with the primary; a primary killed with SIGKILL takes its
  workers with it (no orphan keeps the port).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.mail import make_message, send
from tests.support.server import BccdServer, child_pids
from tests.support.wait import wait_until

ALICE = "alice@acme.test"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pids(srv: BccdServer) -> list[int]:
    assert srv.proc is not None
    return child_pids(srv.proc.pid)


def ready_workers(srv: BccdServer) -> list[int]:
    return [e["pid"] for e in srv.log_events() if e.get("event") == "smtp_worker_ready"]


@pytest.fixture
def workers2(make_server: Callable[..., BccdServer]) -> tuple[BccdServer, str]:
    srv = make_server({"smtp": {"workers": 2}}, start=False)
    bcc = srv.setup_user(ALICE)["bcc_address"]
    srv.start()
    wait_until(lambda: ready_workers(srv), timeout=20)
    return srv, bcc


def _send_all(port: int, bcc: str, raws: list[bytes]) -> list[int]:
    with ThreadPoolExecutor(16) as pool:
        return [code for code, _ in pool.map(lambda raw: send(port, bcc, raw), raws)]


def test_two_smtp_processes_share_the_port_and_store_each_message_once(
        workers2: tuple[BccdServer, str]) -> None:
    srv, bcc = workers2
    raws = [make_message(subject=f"Offer {i}", message_id=f"<w{i}@acme.test>") for i in range(30)]
    codes = _send_all(srv.smtp_port, bcc, raws + raws)  # every message twice, at once
    assert codes == [250] * 60
    with sqlite3.connect(srv.dir / "var" / "bccd.sqlite3") as db:
        ids = [r[0] for r in db.execute("SELECT message_id FROM messages")]
    assert sorted(ids) == sorted(f"w{i}@acme.test" for i in range(30))
    outcomes = Counter((e.get("worker", 0), e.get("outcome"))
                       for e in srv.log_events() if e.get("event") == "copy_outcome")
    assert sum(outcomes.values()) == 60
    # both processes took mail (60 connections hashed over two sockets)
    assert {w for w, _ in outcomes} == {0, 1}
    assert sum(n for (_, o), n in outcomes.items() if o == "stored") == 30

    text = httpx.get(f"{srv.http_url}/metrics", timeout=10).text

    def value(outcome: str) -> float:
        series = f'bccd_messages_accepted_total{{outcome="{outcome}",source="bcc"}} '
        m = re.search("^" + re.escape(series) + r"(\S+)$", text, re.M)
        assert m, text
        return float(m.group(1))

    # the primary's /metrics adds up both processes
    assert value("stored") == 30
    assert value("duplicate") == 30


def test_a_killed_smtp_worker_is_started_again(workers2: tuple[BccdServer, str]) -> None:
    srv, bcc = workers2
    [old] = worker_pids(srv)
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: [p for p in ready_workers(srv) if p != old], timeout=20)
    assert alive(new[0]) and worker_pids(srv) == new
    exited = [e for e in srv.log_events() if e.get("event") == "smtp_worker_exited"]
    assert exited and exited[0]["pid"] == old and exited[0]["code"] == -signal.SIGKILL
    raws = [make_message(subject=f"After {i}", message_id=f"<a{i}@acme.test>") for i in range(20)]
    assert _send_all(srv.smtp_port, bcc, raws) == [250] * 20


def test_sigterm_stops_the_workers_with_the_primary(workers2: tuple[BccdServer, str]) -> None:
    srv, _ = workers2
    [worker] = worker_pids(srv)
    assert srv.stop() == 0
    assert not alive(worker)
    events = [e["event"] for e in srv.log_events()]
    assert "smtp_worker_stopped" in events and "smtp_worker_exited" not in events


def test_a_worker_dies_with_its_primary(workers2: tuple[BccdServer, str]) -> None:
    srv, _ = workers2
    [worker] = worker_pids(srv)
    srv.kill9()
    wait_until(lambda: not alive(worker), timeout=30)
