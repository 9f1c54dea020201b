"""Parsing and authenticity in worker processes: both cores, not one GIL.

``CpuPool(settings, workers)`` starts ``workers`` processes (``forkserver``: never a fork
of the threaded server) on first use. ``await pool.prepare(raw, envelope)`` → ``Prepared``:

1. the bounded parse (``ingest.parse``), ``Parsed.msg`` dropped (it does not cross
   processes, and nothing after parsing needs it);
2. the strict From (``auth.sender.parse_from``);
3. with ``auth.mode = dmarc`` and a usable From, the verdict of the worker's own
   ``Authenticator`` (its own DNS cache) — computed *before* the caller knows whether any
   copy will need it, which saves a second round trip; the caller uses it only for copies
   that passed the address checks, so those refusals stay ``5.7.1`` (SPEC §4.1) and a
   DNS failure matters only when a copy needs the verdict.

Failures travel as values (the taxonomy class name, reason, detail — exceptions with
keyword-only fields do not survive pickling). Over ``budget`` seconds →
``ProcessingTimeout`` (451 4.3.0, load must never cause a permanent refusal). A pool that
broke (a worker killed) is replaced and the message is prepared in a thread this once.

The worker imports only parsing and authenticity (no database, no web stack).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from bccd.auth.sender import Mailbox, parse_from
from bccd.auth.verdict import AuthVerdict, DnsTempError
from bccd.ingest import outcome
from bccd.ingest.outcome import IngestError, ProcessingTimeout
from bccd.ingest.parse import Parsed, parse
from bccd.ingest.types import Envelope
from bccd.log import get_logger

log = get_logger("bccd.ingest")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What a worker needs to build its ``Authenticator`` (picklable)."""

    nameservers: tuple[str, ...]
    port: int
    timeout: float
    authserv_id: str
    trusted_authserv_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """An ``IngestError`` as a value: ``kind`` names its class in ``ingest.outcome``."""

    kind: str
    reason: str
    detail: str = ""

    @classmethod
    def of(cls, err: IngestError) -> Failure:
        return cls(type(err).__name__, err.reason, err.detail)

    def error(self) -> IngestError:
        klass = getattr(outcome, self.kind, None)
        if not (isinstance(klass, type) and issubclass(klass, IngestError)):
            klass = outcome.TemporaryError
        return klass(self.reason, detail=self.detail)


@dataclass(frozen=True, slots=True)
class Prepared:
    parsed: Parsed | None = None
    mailbox: Mailbox | None = None
    failure: Failure | None = None        # parse or From refused: nothing else was done
    verdict: AuthVerdict | None = None    # dmarc mode, From usable
    dns_error: str | None = None          # DnsTempError while deciding
    auth_error: str | None = None         # anything else the authenticator raised
    auth_seconds: float = 0.0


# ------------------------------------------------------------------ worker side
_authenticator: Any = None


def _init_worker(config: AuthConfig | None) -> None:
    global _authenticator
    if config is None:
        return
    from bccd.auth.authenticator import Authenticator
    from bccd.auth.dns import Resolver

    _authenticator = Authenticator(
        Resolver(list(config.nameservers), config.port, config.timeout),
        authserv_id=config.authserv_id, trusted_authserv_ids=config.trusted_authserv_ids)


def prepare(raw: bytes, max_header_size: int, env: Envelope | None,
            authenticator: Any = None) -> Prepared:
    """Parse, From, verdict (see the module docstring); blocking, CPU and DNS work."""
    try:
        parsed = parse(raw, max_header_size=max_header_size)
    except IngestError as err:
        return Prepared(failure=Failure.of(err))
    except RecursionError:
        return Prepared(failure=Failure("TooComplex", "", "MIME structure too deep to parse"))
    parsed.msg = None
    try:
        mailbox = parse_from(parsed.from_values)
    except IngestError as err:
        return Prepared(parsed=parsed, failure=Failure.of(err))
    auth = authenticator if authenticator is not None else _authenticator
    if env is None or auth is None:
        return Prepared(parsed=parsed, mailbox=mailbox)
    t0 = time.monotonic()
    try:
        verdict = auth.evaluate(raw, header_from=mailbox.email, client_ip=env.client_ip,
                                helo=env.helo, mail_from=env.mail_from)
    except DnsTempError as exc:
        return Prepared(parsed=parsed, mailbox=mailbox, dns_error=str(exc),
                        auth_seconds=time.monotonic() - t0)
    except Exception as exc:  # the caller turns it into a temporary failure
        return Prepared(parsed=parsed, mailbox=mailbox,
                        auth_error=f"{type(exc).__name__}: {exc}",
                        auth_seconds=time.monotonic() - t0)
    return Prepared(parsed=parsed, mailbox=mailbox, verdict=verdict,
                    auth_seconds=time.monotonic() - t0)


# ------------------------------------------------------------------ server side
class CpuPool:
    def __init__(self, workers: int, auth: AuthConfig | None, *, max_header_size: int,
                 budget: float) -> None:
        self.workers = workers
        self.auth = auth
        self.max_header_size = max_header_size
        self.budget = budget
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["bccd.ingest.cpu", "bccd.auth.authenticator"])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_init_worker, initargs=(self.auth,))
        return self._pool

    def warm(self) -> None:
        """Start the workers now (at start-up), not on the first message."""
        pool = self._executor()
        for f in [pool.submit(time.sleep, 0) for _ in range(self.workers)]:
            f.result()

    async def prepare(self, raw: bytes, env: Envelope | None) -> Prepared:
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor(), prepare, raw, self.max_header_size, env)
            return await asyncio.wait_for(fut, self.budget)
        except TimeoutError:
            raise ProcessingTimeout(detail="processing budget exceeded") from None
        except BrokenProcessPool:
            log.warning("cpu_pool_broken", detail="a worker process died; starting new ones")
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
