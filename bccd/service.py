"""``bccd serve``: SMTP, HTTP and background workers in one process, one event loop.

This is the composition root: the one place that knows every part. ``bccd.startup``
has already bound the SMTP listener (it answers the greeting, EHLO and MAIL while this
module is imported, RCPT waits) when ``run(settings, db, front)`` builds the pipeline
(``build_pipeline``) and attaches it to the listener, the ``Services`` the parts share
(``bccd.runtime``), the HTTP app, the outbox handler table and the workers of
``WORKERS``; starts everything and logs ``bccd_ready`` once HTTP serves too; waits for
SIGTERM/SIGINT; then drains: new SMTP connections get 421 4.3.2, in-flight transactions
get up to ``smtp.timeout`` to finish, workers stop. SIGHUP reloads the STARTTLS
certificate. Listening sockets passed in by systemd socket activation (``LISTEN_FDS``,
see ``bccd.systemd``) are used instead of binding ``smtp.listen``/``http.listen``.
``run_smtp_worker`` is the life of one extra SMTP process (``smtp.workers``,
``bccd.smtp.workers``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import uvicorn
from sqlalchemy import select

from bccd.compose import send
from bccd.config import Settings
from bccd.imap import sentcopy
from bccd.imap.poller import run_poller
from bccd.imap.probe import probe as probe_mailbox
from bccd.imap.writeback import run_writeback
from bccd.ingest import holding
from bccd.ingest.pipeline import build_pipeline
from bccd.lifecycle.worker import lifecycle_worker
from bccd.log import get_logger
from bccd.notify import jobs, outbound, webhooks
from bccd.notify.worker import outbox_cleanup_worker, outbox_worker
from bccd.quarantine.hold import RELEASE_KIND
from bccd.runtime import Services
from bccd.smtp.delivery import Delivery
from bccd.smtp.server import SmtpService
from bccd.smtp.workers import WorkerPool
from bccd.startup import Listening, install_signals
from bccd.store import events
from bccd.store.db import Database
from bccd.store.models import Company
from bccd.tracking import hits
from bccd.web.app import create_app

log = get_logger("bccd.serve")

Worker = Callable[[Services, asyncio.Event], Coroutine[Any, Any, None]]


def outbox_handlers(services: Services) -> Mapping[str, jobs.JobHandler]:
    """The outbox's work, by job kind, each bound to what it needs."""
    return {
        outbound.MAIL_KIND: functools.partial(outbound.deliver_job, services.settings),
        RELEASE_KIND: functools.partial(holding.release_job, services.pipeline),
        events.KIND: functools.partial(webhooks.deliver_job, services.settings.webhooks),
        send.KIND: services.sender.run_job,
        send.SENT_COPY_KIND: functools.partial(sentcopy.append_job, services.settings, services.db),
        hits.KIND: functools.partial(hits.confirm_job, services.db),
    }


class _Http(uvicorn.Server):
    """uvicorn's server, saying when it serves (``bccd_ready`` waits for it)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.serving.set()


async def _outbox(services: Services, stop: asyncio.Event) -> None:
    await outbox_worker(services.db, outbox_handlers(services), stop)


async def _outbox_cleanup(services: Services, stop: asyncio.Event) -> None:
    await outbox_cleanup_worker(services.db, stop)


async def _imap_poller(services: Services, stop: asyncio.Event) -> None:
    await run_poller(services.settings, services.db, services.pipeline, stop,
                     control=services.mailboxes)


async def _imap_writeback(services: Services, stop: asyncio.Event) -> None:
    await run_writeback(services.settings, services.db, stop)


WORKERS: tuple[Worker, ...] = (_outbox, _outbox_cleanup, _imap_poller, _imap_writeback,
                               lifecycle_worker)


async def _guide_a_first_run(services: Services) -> None:
    """On an installation without any company, say once (at start) what to do next."""

    def empty() -> bool:
        with services.db.read() as s:
            return s.scalar(select(Company.id).limit(1)) is None

    try:
        if not await services.db.run(empty):
            return
    except Exception:  # the database is checked and reported elsewhere (/healthz, doctor)
        return
    log.info("no_company_yet",
             next_step="run `bccd quickstart` in another terminal (.venv/bin/bccd from a"
                       " checkout): it creates a company and your user, and prints your Smart"
                       " Bcc address, a sign-in link for the Mail page and a first copy to send",
             mail_page=services.settings.http.base_url.rstrip("/") + "/mail")


async def run(settings: Settings, db: Database, front: Listening, *,
              config_path: str | None = None) -> None:
    events.attach(db, settings)
    pipeline = build_pipeline(settings, db)
    smtp, stop = front.smtp, front.stop
    services = Services(settings, db, pipeline, smtp_listening=smtp.listening)
    services.mailboxes.probe = probe_mailbox
    pool: WorkerPool | None = None

    def forward_hup() -> None:
        if pool is not None:
            pool.signal(signal.SIGHUP)

    install_signals(smtp, stop, on_hup=forward_hup)  # SIGHUP now reaches the workers too
    smtp.attach(Delivery(settings, pipeline))  # RCPT and DATA are answered from here on
    smtp_sock = front.inherited.get("smtp")
    processes = front.processes
    if processes > 1:
        pool = WorkerPool(settings, config_path, processes - 1, smtp_sock)
        await pool.start()
    host, port = settings.http.host_port
    config = uvicorn.Config(create_app(services), host=host, port=port, log_config=None,
                            access_log=False, lifespan="off")
    http = _Http(config)
    http_sock = front.inherited.get("http")
    http_task = asyncio.create_task(http._serve(sockets=[http_sock] if http_sock else None),
                                    name="http")
    worker_tasks = [asyncio.create_task(w(services, stop), name=w.__name__.lstrip("_"))
                    for w in WORKERS]
    # bccd_ready: HTTP serves too (or its task ended, and says why)
    serving = asyncio.create_task(http.serving.wait())
    await asyncio.wait([serving, http_task], return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    if http_sock is not None:
        name = http_sock.getsockname()
        log.info("http_listening", address=f"{name[0]}:{name[1]}", inherited=True)
    else:
        log.info("http_listening", address=f"{host}:{port}")
    log.info("bccd_ready", bcc_domain=settings.smtp.bcc_domain, smtp_processes=processes)
    await _guide_a_first_run(services)
    await stop.wait()
    log.info("bccd_stopping")
    if pool is not None:
        pool.begin_stop()  # the workers drain while this process does
    await smtp.stop(drain_seconds=float(settings.smtp.timeout))
    if pool is not None:
        await pool.stop()
    await pipeline.drain()
    await services.sender.drain()
    http.should_exit = True
    for t in worker_tasks:
        try:
            await asyncio.wait_for(t, 10)
        except (TimeoutError, asyncio.CancelledError):
            t.cancel()
        except Exception as exc:
            log.warning("worker_failed", worker=t.get_name(), error=repr(exc))
    try:
        await asyncio.wait_for(http_task, 10)
    except TimeoutError:
        http_task.cancel()
    log.info("bccd_stopped")


async def run_smtp_worker(settings: Settings, db: Database, index: int,
                          inherited_fd: int | None) -> None:
    """An SMTP worker's life: SMTP and the pipeline until SIGTERM/SIGINT, then drain."""
    pipeline = build_pipeline(settings, db)
    smtp = SmtpService(settings)
    smtp.attach(Delivery(settings, pipeline))
    stop = asyncio.Event()
    install_signals(smtp, stop)
    sock = None
    if inherited_fd is not None:
        sock = socket.socket(fileno=inherited_fd)
        sock.setblocking(False)
    await smtp.start(sock=sock, reuse_port=sock is None)
    log.info("smtp_worker_ready", worker=index, pid=os.getpid())
    await stop.wait()
    await smtp.stop(drain_seconds=float(settings.smtp.timeout))
    await pipeline.drain()
