"""Several SMTP processes: every core takes mail, not one GIL (``smtp.workers``).

The process ``bccd serve`` starts — the *primary* — runs everything: SMTP, HTTP, the
outbox, mailbox sync, lifecycle jobs. With ``smtp.workers`` = n > 1 (0: one per CPU) it
also starts n − 1 *SMTP workers* (``bccd serve --smtp-worker i``, hidden option; their
life is ``bccd.service.run_smtp_worker``) that run only the SMTP listener and the ingest
pipeline, each with its own database engine and group writer. The pipeline is the same
in every process, so a message gets the same reply whichever process takes it.

* **Listening.** Every process binds ``smtp.listen`` with ``SO_REUSEPORT``: the kernel
  spreads new connections over them (by connection hash, not by load — a long-lived
  client connection stays with the process that accepted it). Only processes of the same
  user may join the port. A socket passed in by systemd socket activation is shared
  instead (one accept queue, handed to the workers as an inherited fd).
* **Storing.** Dedup is the database's unique constraint, so copies of one message taken
  by two processes at once are stored once — as with several instances on one
  PostgreSQL (SPEC §11). On SQLite the group writers of all processes take turns on a
  lock file beside the database (``Database``), so a writer waits for the lock without
  SQLite's busy-retry sleeps.
* **Supervision.** A worker that exits while the primary runs is logged
  (``smtp_worker_exited``, error) and started again after 1 s, doubling up to 30 s while it
  keeps failing within a minute of its start. SIGHUP (certificate reload) is passed on.
  SIGTERM/SIGINT: the workers get SIGTERM first and drain as the primary does (new
  connections 421 4.3.2, transactions in flight up to ``smtp.timeout``); one still
  running ``STOP_GRACE`` seconds after that is killed. A worker whose primary dies gets
  SIGTERM from the kernel (``PR_SET_PDEATHSIG``): no orphan keeps the port.
* **Limits.** ``smtp.max_connections`` and ``max_connections_per_ip`` count per process:
  with n processes a client may hold up to n × the per-IP limit.
* **Metrics.** With workers, prometheus_client runs in its multiprocess mode (a directory
  under ``<data_dir>/run``, made by ``metrics_dir``): ``/metrics`` on the primary sums
  every process's counters and histograms; the ``bccd_process_*`` series are the
  primary's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from bccd.config import Settings
from bccd.log import get_logger
from bccd.private import private_dirs

log = get_logger("bccd.smtp")

PR_SET_PDEATHSIG = 1
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0       # a worker that ran this long restarts after RESTART_FIRST again
STOP_GRACE = 10.0          # beyond smtp.timeout, before a stopping worker is killed


def worker_argv(config_path: str | None, index: int, primary_pid: int,
                inherited_fd: int | None) -> list[str]:
    argv = [sys.executable, "-m", "bccd"]
    if config_path:
        argv += ["--config", config_path]
    argv += ["serve", "--smtp-worker", str(index), "--primary-pid", str(primary_pid)]
    if inherited_fd is not None:
        argv += ["--smtp-fd", str(inherited_fd)]
    return argv


class WorkerPool:
    """The primary's side: starts, watches, signals and stops the SMTP workers."""

    def __init__(self, settings: Settings, config_path: str | None, count: int,
                 sock: socket.socket | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.count = count
        self.sock = sock
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        for i in range(1, self.count + 1):
            self._tasks.append(asyncio.create_task(self._keep(i), name=f"smtp-worker-{i}"))

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        fd = self.sock.fileno() if self.sock is not None else None
        argv = worker_argv(self.config_path, index, os.getpid(), fd)
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, pass_fds=(fd,) if fd is not None else ())

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST
        while not self._stopping.is_set():
            started = loop.time()
            try:
                proc = await self._spawn(index)
            except OSError as exc:
                log.error("smtp_worker_failed_to_start", worker=index, error=str(exc),
                          restart_in=delay)
            else:
                self.procs[index] = proc
                log.info("smtp_worker_started", worker=index, pid=proc.pid)
                code = await proc.wait()
                del self.procs[index]
                if self._stopping.is_set():
                    log.info("smtp_worker_stopped", worker=index, pid=proc.pid, code=code)
                    return
                if loop.time() - started >= HEALTHY_AFTER:
                    delay = RESTART_FIRST
                log.error("smtp_worker_exited", worker=index, pid=proc.pid, code=code,
                          restart_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(RESTART_MAX, delay * 2)

    def signal(self, sig: int) -> None:
        for proc in list(self.procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def begin_stop(self) -> None:
        """No more restarts; every worker starts draining (SIGTERM)."""
        self._stopping.set()
        self.signal(signal.SIGTERM)

    async def stop(self) -> None:
        """``begin_stop``, then wait for the workers; kill those past their grace."""
        self.begin_stop()
        if not self._tasks:
            return
        grace = float(self.settings.smtp.timeout) + STOP_GRACE
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        if pending:
            log.error("smtp_workers_killed", workers=sorted(self.procs))
            self.signal(signal.SIGKILL)
            await asyncio.wait(pending, timeout=STOP_GRACE)


def die_with_parent(primary_pid: int) -> None:
    """Ask the kernel for SIGTERM when the primary goes; exit if it is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != primary_pid:
        raise SystemExit(0)


# ------------------------------------------------------------------ metrics directory
def metrics_dir(settings: Settings) -> Path:
    """A fresh directory for prometheus_client's multiprocess files, under
    ``<data_dir>/run``; directories left by primaries that are gone are removed."""
    run = settings.data_dir / "run"
    private_dirs(run)
    for old in run.glob("metrics-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"metrics-{os.getpid()}-", dir=run))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
