"""What ``bccd serve`` does first: answer SMTP, then load and build everything else.

Importing the HTTP app, the ingest path (the parser, dkimpy, pyspf), the mailbox sync
and the models, and opening (or migrating) the database, take most of a second on a
small machine. A sending MTA, a load balancer's probe or a person at a terminal should
not wait for all of it to be greeted, so ``serve(settings, prepare)``:

1. refuses settings the ingest path could not run with (no DNS resolver for the
   authenticity checks: ``bccd.auth.dns.check``) before anything listens (SPEC §10);
   then binds ``smtp.listen`` (or takes the socket systemd passed in, ``bccd.systemd``)
   with the listener alone (``bccd.smtp.server``, which loads nothing of the ingest path) and
   installs the signal handlers: from here a client gets its ``220`` greeting and
   EHLO/HELO/LHLO, STARTTLS, MAIL, RSET, NOOP and QUIT are answered;
2. runs ``prepare`` in a worker thread while the event loop keeps answering: it opens
   the database (migrating an embedded SQLite one) and imports the rest
   (``bccd.service``); a RCPT waits meanwhile (``bccd.smtp.handler``), so no ``250`` to
   RCPT or DATA is given before the ingest path is ready;
3. awaits what ``prepare`` returned (``bccd.service.run``): it builds the pipeline,
   attaches it to the listener (the waiting RCPTs are answered), starts HTTP, the SMTP
   worker processes and the background workers, and logs ``bccd_ready`` once all of
   them serve.

If ``prepare`` fails (a database that cannot be opened or is not current, …) or
SIGTERM/SIGINT comes before it is done, a waiting RCPT gets ``421 4.3.2``, the listener
closes, and the error is raised as before (SIGTERM: a clean exit once ``prepare`` has
returned).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bccd.auth import dns
from bccd.config import Settings
from bccd.errors import BccdError
from bccd.log import get_logger
from bccd.smtp.server import SmtpService
from bccd.systemd import listen_sockets

log = get_logger("bccd.serve")


@dataclass(slots=True)
class Listening:
    """The SMTP listener that already answers, and what the rest of ``serve`` takes over."""

    smtp: SmtpService
    stop: asyncio.Event  # set by SIGTERM/SIGINT
    inherited: dict[str, socket.socket]  # systemd socket activation: "smtp", "http"
    processes: int  # SMTP processes in all (``smtp.workers``), this one included


Run = Callable[[Listening], Awaitable[None]]


def install_signals(smtp: SmtpService, stop: asyncio.Event, *,
                    on_hup: Callable[[], None] | None = None) -> None:
    """SIGTERM/SIGINT set ``stop``; SIGHUP loads the STARTTLS certificate again (then
    calls ``on_hup``). For the primary and every SMTP worker alike; called again, it
    replaces the handlers."""
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


async def listen(settings: Settings) -> Listening:
    """Step 1: the listener bound (or inherited) and answering, signals installed."""
    dns.check(settings)
    smtp = SmtpService(settings)
    stop = asyncio.Event()
    install_signals(smtp, stop)
    try:
        inherited = listen_sockets()
    except ValueError as exc:
        raise BccdError(str(exc)) from None
    sock = inherited.get("smtp")
    processes = settings.smtp.process_count
    await smtp.start(sock=sock, reuse_port=processes > 1 and sock is None)
    return Listening(smtp, stop, inherited, processes)


async def serve(settings: Settings, prepare: Callable[[], Run]) -> None:
    """The life of ``bccd serve``: steps 1 to 3 above, until SIGTERM/SIGINT and the drain."""
    front = await listen(settings)
    try:
        run = await asyncio.to_thread(prepare)
    except BaseException:
        await _give_up(front)
        raise
    if front.stop.is_set():
        log.info("bccd_stopping")
        await _give_up(front)
        log.info("bccd_stopped")
        return
    await run(front)


async def _give_up(front: Listening) -> None:
    front.smtp.unavailable()
    await front.smtp.stop(drain_seconds=0)
