"""Engine and transactions.

``Database(url)`` owns one SQLAlchemy engine. ``db.transaction()`` is the only way code
writes: a session that commits on success and rolls back on any exception. SQLite runs in
WAL mode with ``synchronous=FULL`` (a commit is on disk before it returns) and a busy
timeout (``busy_timeout`` seconds, then "database is locked"); PostgreSQL with
``synchronous_commit=on``.

All calls are blocking: async code reaches them through ``Database.run`` (a worker
thread), never on the event loop.

Group commit: ``await db.write(fn, *args)`` runs ``fn(session, *args)`` on a writer thread
that takes every write request pending at that moment and commits them in ONE
transaction (one fsync for all). The group first runs without savepoints; if any request
raises (or the commit fails), that transaction is rolled back whole and the group runs
again with each request in its own SAVEPOINT. There a request that raises has only its
savepoint rolled back; it is then retried alone in a transaction of its own after the
group has committed, and that second result is its outcome (a deadlock or serialization
failure there is tried again a few times: it says nothing about the request). If the
group's commit itself fails, every request of the group is retried alone. ``write`` returns only
after the transaction holding the request's work has committed — the promise behind
``250`` (STYLE 6). SQLite has one writer thread (it has one writer anyway, and waiting on
the file lock costs far more than a queue); PostgreSQL ``write_lanes`` of them, so
requests also commit in parallel. ``fn`` must be safe to run twice (a retry) and must not
keep ORM objects beyond the call. ``rerun(session)`` says whether the request is running
again (its group with savepoints, or alone): a request that can meet a concurrent
writer's row can then take its own savepoint, and leave the first run without one
(``ingest.filing.file_in``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import functools
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bccd.private import private_file

T = TypeVar("T")

MAX_GROUP = 64                  # requests per group transaction
MAX_GROUP_BYTES = 32 * 1024 * 1024  # and their declared size (raw messages) together
TRANSIENT_TRIES = 4             # a request alone, when deadlocks keep choosing it
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
_RERUN = "bccd.rerun"           # Session.info: the group writer runs these requests again


def rerun(session: Session) -> bool:
    """Whether the group writer is running this request again (module docstring)."""
    return bool(session.info.get(_RERUN))


def transient(exc: BaseException) -> bool:
    """A database error that a retry of the same transaction may not meet again."""
    return isinstance(exc, DBAPIError) and \
        getattr(exc.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    return pragmas


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("bccd_read_only"):
        # ``Database.read_only``: a WAL reader neither takes nor waits for the write lock
        conn.exec_driver_sql("BEGIN")
        return
    # take the write lock at BEGIN so concurrent writers queue on busy_timeout instead of
    # failing with "database is locked" on lock upgrade
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(eq=False, slots=True)
class _WriteRequest:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop | None
    future: Any                     # asyncio.Future (async callers) or concurrent Future
    size: int = 0
    value: Any = None
    error: BaseException | None = None
    done: threading.Event | None = field(default=None)
    context: contextvars.Context | None = None   # the submitter's (log ids)

    def call(self, session: Session) -> None:
        if self.context is None:
            self.value = self.fn(session, *self.args)
        else:
            self.value = self.context.run(self.fn, session, *self.args)


class GroupWriter:
    """The writer threads behind ``Database.write`` (see the module docstring)."""

    def __init__(self, db: Database, lanes: int) -> None:
        self._db = db
        self._pending: deque[_WriteRequest] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.groups = 0           # statistics (bench output, tests)
        self.requests = 0
        self.retries = 0
        self.regroups = 0         # groups run again with a savepoint per request
        self._threads = [threading.Thread(target=self._loop, name=f"db-writer-{i}", daemon=True)
                         for i in range(lanes)]
        for t in self._threads:
            t.start()

    def submit(self, req: _WriteRequest) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("database is closed")
            self._pending.append(req)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def _take(self) -> list[_WriteRequest] | None:
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            group = [self._pending.popleft()]
            size = group[0].size
            while self._pending and len(group) < MAX_GROUP \
                    and size + self._pending[0].size <= MAX_GROUP_BYTES:
                req = self._pending.popleft()
                size += req.size
                group.append(req)
            return group

    def _loop(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            self._run_group(group)

    def _run_group(self, group: list[_WriteRequest]) -> None:
        if len(group) > 1 and self._together(group):
            return
        db = self._db
        retry: list[_WriteRequest] = []
        try:
            with db._interprocess(), db._sessions() as s, s.begin():
                s.info[_RERUN] = len(group) > 1
                if len(group) == 1:  # nothing to share: no savepoint
                    req = group[0]
                    try:
                        req.call(s)
                    except Exception as exc:
                        req.error = exc
                        retry.append(req)
                        raise
                else:
                    for req in group:
                        try:
                            with s.begin_nested():
                                req.call(s)
                        except Exception as exc:  # only this request's savepoint is undone
                            req.error = exc
                            retry.append(req)
        except Exception:  # the commit (or BEGIN) failed: nothing of the group is durable
            retry = list(group)
        self.groups += 1
        self.requests += len(group)
        for req in group:
            if req not in retry:
                self._resolve(req)
        for req in retry:  # alone, once more: that outcome is final
            self._alone(req)
            self._resolve(req)

    def _alone(self, req: _WriteRequest) -> None:
        """One request in a transaction of its own. A deadlock or serialization failure
        (PostgreSQL: concurrent transactions, other instances) says nothing about the
        request: it is tried again, up to ``TRANSIENT_TRIES`` times, after a short random
        pause that lets the other transaction finish."""
        db = self._db
        for attempt in range(1, TRANSIENT_TRIES + 1):
            req.value, req.error = None, None
            self.retries += 1
            try:
                with db._interprocess(), db._sessions() as s, s.begin():
                    s.info[_RERUN] = True
                    req.call(s)
                return
            except Exception as exc:
                req.error = exc
                if attempt == TRANSIENT_TRIES or not transient(exc):
                    return
            time.sleep(random.uniform(0.01, 0.05) * attempt)

    def _together(self, group: list[_WriteRequest]) -> bool:
        """The whole group in one transaction, no savepoints: the common case, where no
        request raises (a SAVEPOINT and its RELEASE per request cost about a tenth of
        filing's CPU). False, with nothing committed, when a request raised or the commit
        failed: the group then runs again, a savepoint per request."""
        db = self._db
        try:
            with db._interprocess(), db._sessions() as s, s.begin():
                for req in group:
                    req.call(s)
        except Exception:
            for req in group:
                req.value = None
            self.regroups += 1
            return False
        self.groups += 1
        self.requests += len(group)
        for req in group:
            self._resolve(req)
        return True

    @staticmethod
    def _resolve(req: _WriteRequest) -> None:
        if req.loop is None:
            assert req.done is not None
            req.done.set()
            return
        fut = req.future

        def settle() -> None:
            if fut.done():  # the caller went away (cancelled); the work is committed anyway
                return
            if req.error is not None:
                fut.set_exception(req.error)
            else:
                fut.set_result(req.value)

        try:
            req.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # pragma: no cover - the loop is closed: nobody is waiting
            pass


class Database:
    def __init__(self, url: str, *, pool_size: int = 8, busy_timeout: float = 10.0,
                 write_lanes: int | None = None) -> None:
        self.url = url
        u = make_url(url)
        self.is_sqlite = u.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
                # created 0600 before SQLite opens it: -wal and -shm take its mode
                private_file(Path(u.database))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
            kwargs["pool_size"] = pool_size
        else:
            kwargs.update(pool_size=pool_size, max_overflow=4, pool_pre_ping=True)
            if u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
                u = u.set(drivername="postgresql+psycopg")
            kwargs["connect_args"] = {"options": "-c synchronous_commit=on", "connect_timeout": 10}
        self.engine: Engine = create_engine(u, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(int(busy_timeout * 1000)))
            # pysqlite's own transaction handling is off; we emit BEGIN IMMEDIATE
            event.listen(
                self.engine,
                "connect",
                lambda c, _r: setattr(c, "isolation_level", None),
            )
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="db")
        self._write_lanes = 1 if self.is_sqlite else max(1, write_lanes or 2)
        self._writer: GroupWriter | None = None
        self._writer_lock = threading.Lock()
        self._lock_path = (u.database + "-writer.lock"
                           if self.is_sqlite and u.database and u.database != ":memory:" else None)
        self._lockfd: int | None = None

    @contextlib.contextmanager
    def _interprocess(self) -> Iterator[None]:
        """SQLite, several processes (``smtp.workers``): their group writers take turns on
        an exclusive ``flock`` of ``<database>-writer.lock`` before ``BEGIN IMMEDIATE``.
        Waiting on SQLite's own lock means its busy handler's sleeps (growing to 100 ms);
        a process blocked in ``flock`` is woken the moment the lock is free (measured with
        two processes: 535–569 msgs/s and p99 57–64 ms, against 359–443 msgs/s and
        p99 130–165 ms polling the lock every 0.5–2 ms). The wait has no time limit: the
        kernel frees the lock when its holder exits, and a holder inside its transaction
        is bounded by ``busy_timeout`` — only a stopped process (SIGSTOP) holds it on, and
        then mail waits rather than being refused (its clients retry). Transactions that
        are not the group writer's (CLI, HTTP, IMAP marks) do not take it. Only the writer
        thread calls this."""
        if self._lock_path is None:
            yield
            return
        if self._lockfd is None:
            self._lockfd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lockfd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Session]:
        """A session that only reads. On SQLite its transaction is a plain (deferred)
        BEGIN: it reads the last committed state without waiting for — or holding up —
        the writer (``read`` begins IMMEDIATE like a write: some callers write through
        it). Writing through it is a mistake (SQLite may then refuse the lock; on
        PostgreSQL each statement would commit on its own)."""
        with self._sessions() as session:
            if self.is_sqlite:
                session.connection(execution_options={"bccd_read_only": True})
            else:
                # PostgreSQL (READ COMMITTED: every statement takes a fresh snapshot, in a
                # transaction or not): autocommit saves the BEGIN and ROLLBACK round trips
                session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking database work in the database worker threads."""
        return await self.run_soon(fn, *args, **kwargs)

    def run_soon(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """``run``, submitted to the worker threads now: it runs even if the caller is
        cancelled before awaiting it (await it through ``asyncio.shield``); ``dispose``
        waits for it."""
        work = self._executor.submit(contextvars.copy_context().run,
                                     functools.partial(fn, *args, **kwargs))
        return asyncio.wrap_future(work, loop=asyncio.get_running_loop())

    def _group_writer(self) -> GroupWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = GroupWriter(self, self._write_lanes)
        return self._writer

    async def write(self, fn: Callable[..., T], /, *args: Any, size: int = 0) -> T:
        """``fn(session, *args)`` committed by the group writer (module docstring);
        ``size`` (bytes, e.g. the raw message) bounds a group's total."""
        return await self.submit(fn, *args, size=size)

    def submit(self, fn: Callable[..., T], /, *args: Any, size: int = 0) -> asyncio.Future[T]:
        """``write``, queued now (before this returns: requests queue in the order they
        are submitted); the future settles when it is committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._group_writer().submit(_WriteRequest(fn, args, loop, fut, size,
                                                  context=contextvars.copy_context()))
        return fut

    def write_sync(self, fn: Callable[..., T], /, *args: Any, size: int = 0) -> T:
        """``write`` for blocking callers (scripts, the benchmark): same group writer."""
        req = _WriteRequest(fn, args, None, None, size, done=threading.Event())
        self._group_writer().submit(req)
        assert req.done is not None
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.value  # type: ignore[no-any-return]

    def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None
        self._executor.shutdown(wait=True)
        self.engine.dispose()
