"""``bccd serve``: SMTP, HTTP and background workers in one process, one event loop.

``Services`` holds what the parts share (settings, database, blob store, pipeline) and is
passed in explicitly — there is no global. ``run(settings)`` starts everything, waits for
SIGTERM/SIGINT, then drains: new SMTP connections get 421 4.3.2, in-flight transactions
get up to ``smtp.timeout`` to finish, workers stop. SIGHUP reloads the STARTTLS
certificate. Listening sockets passed in by systemd socket activation (``LISTEN_FDS``,
see ``bccd.systemd``) are used instead of binding ``smtp.listen``/``http.listen``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from bccd.config import Settings
from bccd.ingest.pipeline import Pipeline
from bccd.log import get_logger
from bccd.store.blobs import BlobStore
from bccd.store.db import Database

if TYPE_CHECKING:
    from bccd.smtp.server import SmtpService

log = get_logger("bccd.serve")

Worker = Callable[["Services", asyncio.Event], Coroutine[Any, Any, None]]
RouteFactory = Callable[["Services"], list[Any]]


class Services:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.blobs = BlobStore(settings.blob_dir)
        self.pipeline = Pipeline(settings, db, self.blobs, authenticator=build_authenticator(settings))
        self.smtp: Any = None
        self.http_routes: list[RouteFactory] = []
        self.workers: list[Worker] = []

    def smtp_listening(self) -> bool:
        return bool(self.smtp and self.smtp.server and self.smtp.server.is_serving())


def build_authenticator(settings: Settings) -> object | None:
    if settings.auth.mode == "off":
        log.warning("auth_mode_off", detail="sender authenticity is NOT checked (auth.mode = off)")
        return None
    try:
        from bccd.auth.authenticator import Authenticator
        from bccd.auth.dns import Resolver, ResolverConfigError
    except ImportError:  # pragma: no cover - authenticity module not installed
        raise RuntimeError("auth.mode = dmarc needs bccd.auth.authenticator") from None
    from bccd.config import ConfigError

    try:
        resolver = Resolver.from_settings(settings.dns)
    except ResolverConfigError as exc:
        raise ConfigError(f"dns.nameservers: {exc}") from None
    authserv_id = settings.authserv_id
    try:
        authenticator = Authenticator(
            resolver,
            authserv_id=authserv_id,
            trusted_authserv_ids=settings.auth.trusted_authserv_ids,
        )
    except ValueError as exc:
        raise ConfigError(f"auth.authserv_id: {exc}") from None
    log.info("auth_mode_dmarc", authserv_id=authenticator.authserv_id,
             nameservers=resolver.nameservers,
             resolver="configured" if settings.dns.nameservers else "system",
             port=resolver.port, timeout=resolver.timeout)
    return authenticator


def install_signals(smtp: SmtpService, stop: asyncio.Event, *,
                    on_hup: Callable[[], None] | None = None) -> None:
    """SIGTERM/SIGINT set ``stop``; SIGHUP loads the STARTTLS certificate again (then
    calls ``on_hup``). For the primary and every SMTP worker alike."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload_tls() -> None:
        task = asyncio.create_task(smtp.reload_tls(), name="tls-reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)
        if on_hup is not None:
            on_hup()

    loop.add_signal_handler(signal.SIGHUP, reload_tls)


def _extensions(services: Services) -> None:
    """Optional parts register their routes and workers here."""
    import importlib

    for name in ("bccd.web.routes", "bccd.notify.worker", "bccd.imap.service", "bccd.lifecycle.worker"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.register(services)


async def run(settings: Settings, db: Database, *, config_path: str | None = None) -> None:
    import uvicorn

    from bccd.smtp.server import SmtpService
    from bccd.web.app import create_app

    services = Services(settings, db)
    _extensions(services)
    smtp = SmtpService(settings, services.pipeline)
    services.smtp = smtp
    stop = asyncio.Event()
    pool: Any = None

    def forward_hup() -> None:
        if pool is not None:
            pool.signal(signal.SIGHUP)

    install_signals(smtp, stop, on_hup=forward_hup)
    from bccd.errors import BccdError
    from bccd.systemd import listen_sockets

    try:
        inherited = listen_sockets()
    except ValueError as exc:
        raise BccdError(str(exc)) from None
    smtp_sock = inherited.get("smtp")
    processes = settings.smtp.process_count
    await smtp.start(sock=smtp_sock, reuse_port=processes > 1 and smtp_sock is None)
    if processes > 1:
        from bccd.smtp.workers import WorkerPool

        pool = WorkerPool(settings, config_path, processes - 1, smtp_sock)
        await pool.start()
    host, port = settings.http.host_port
    config = uvicorn.Config(create_app(services), host=host, port=port, log_config=None,
                            access_log=False, lifespan="off")
    http = uvicorn.Server(config)
    http_sock = inherited.get("http")
    http_task = asyncio.create_task(http._serve(sockets=[http_sock] if http_sock else None),
                                    name="http")
    worker_tasks = [asyncio.create_task(w(services, stop), name=getattr(w, "__name__", "worker"))
                    for w in services.workers]
    if http_sock is not None:
        name = http_sock.getsockname()
        log.info("http_listening", address=f"{name[0]}:{name[1]}", inherited=True)
    else:
        log.info("http_listening", address=f"{host}:{port}")
    log.info("bccd_ready", bcc_domain=settings.smtp.bcc_domain, smtp_processes=processes)
    await stop.wait()
    log.info("bccd_stopping")
    if pool is not None:
        pool.begin_stop()  # the workers drain while this process does
    await smtp.stop(drain_seconds=float(settings.smtp.timeout))
    if pool is not None:
        await pool.stop()
    await services.pipeline.drain()
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
