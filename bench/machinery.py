"""What each piece of the performance machinery buys, measured with it and without it.

Each row runs the same work on a fresh SQLite database (WAL, ``synchronous=FULL``, as
``bccd serve``), with the piece and then with the plain path it replaces, alternating
``--repeat`` times; it prints the median rate of each and their ratio (``buys``). A piece
whose ratio falls below 1.05 no longer earns its code (docs/performance.md).

- **group writer** (``Database.write``): 20 concurrent writers file ``--messages`` copies
  (``filing.file_in``, the SMTP path's transaction). With it, the requests pending at a
  moment share one transaction and one fsync; without it, ``MAX_GROUP`` = 1, every copy
  is a transaction of its own.
- **direct statements** (``store.direct.execute``): one writer files ``--messages``
  copies one after the other. Without it, every statement goes through SQLAlchemy's
  ``Connection.execute``.
- **single-flight lookups** (``ingest.lookups.Lookups``): 20 sessions of one user each
  ask RCPT's directory read at once, ``--lookups`` rounds. Without it, every call makes
  its own read.

The workload is ``bench.linking_scale``'s (a company of 1,000 persons; two known and one
new counterpart per copy, a third of them replies).

    .venv/bin/python -m bench.machinery [--messages 400] [--lookups 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from sqlalchemy import text

from bccd.addresses import user_bcc_address
from bccd.config import Settings
from bccd.ingest import filing
from bccd.ingest.lookups import Lookups
from bccd.ingest.outcome import Disposition, Outcome
from bccd.store import db as store_db
from bccd.store import direct
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bench.linking_scale import BCC_DOMAIN, populate, workload

T = TypeVar("T")
PERSONS = 1_000
TOKEN = "benchbenchbenchab"
SESSIONS = 20


def _plain_execute(conn: Any, stmt: Any, params: Any = None) -> direct.Rows:
    """What ``direct.execute`` replaces: SQLAlchemy's own execution, every call (its rows
    in the same list, so callers see no difference)."""
    res = conn.execute(stmt, params) if params is not None else conn.execute(stmt)
    return direct.Rows(res.all() if res.returns_rows else ())


class EveryCallReads(Lookups):
    """``Lookups`` without the coalescing: every call its own read."""

    async def shared(self, key: Hashable, fn: Callable[..., T], *args: Any) -> T:
        self.calls += 1
        self.reads += 1
        return await self.db.run(fn, *args)


def _fresh(tmp: Path, name: str) -> tuple[Database, int]:
    """A migrated SQLite database with the workload's company; the user's id."""
    url = f"sqlite:///{tmp / (name + '.sqlite3')}"
    upgrade(url)
    db = Database(url)
    return db, populate(db, PERSONS)


def filing_rate(tmp: Path, name: str, requests: list[filing.FileRequest], writers: int) -> float:
    """Copies per second, ``writers`` callers filing ``requests`` (after 10 not counted)
    through ``filing.file_copy`` — the group writer's transaction, committed — every one
    stored."""
    db, user_id = _fresh(tmp, name)
    blobs = BlobStore(tmp / (name + "-blobs"))
    reqs = [dataclasses.replace(r, user_id=user_id) for r in requests]

    def file(r: filing.FileRequest) -> Outcome:
        return filing.file_copy(db, blobs, r)

    try:
        for r in reqs[:10]:
            file(r)
        rest = reqs[10:]
        with ThreadPoolExecutor(writers) as pool:
            t0 = time.perf_counter()
            # one writer files from this thread: no hand-off to a pool thread per copy
            outs = [file(r) for r in rest] if writers == 1 else list(pool.map(file, rest))
            elapsed = time.perf_counter() - t0
        assert all(o.disposition is Disposition.STORED for o in outs), outs[:3]
        return len(rest) / elapsed
    finally:
        db.dispose()


def group_writer(tmp: Path, name: str, on: bool, requests: list[filing.FileRequest]) -> float:
    """Copies per second, 20 writers at once; without it, one copy per transaction."""
    with mock.patch.object(store_db, "MAX_GROUP", store_db.MAX_GROUP if on else 1):
        return filing_rate(tmp, name, requests, SESSIONS)


def direct_statements(tmp: Path, name: str, on: bool,
                      requests: list[filing.FileRequest]) -> float:
    """Copies per second, one writer; without it, every statement through SQLAlchemy."""
    with mock.patch.object(direct, "execute", direct.execute if on else _plain_execute):
        return filing_rate(tmp, name, requests, 1)


def single_flight(tmp: Path, name: str, on: bool, rounds: int) -> float:
    """RCPT answers per second, 20 sessions asking at once."""
    db, _ = _fresh(tmp, name)
    with db.transaction() as s:  # a token of the alphabet RCPT accepts (base32)
        s.execute(text("UPDATE users SET bcc_token = :t"), {"t": TOKEN})
    settings = Settings.model_validate({"smtp": {"bcc_domain": BCC_DOMAIN}})
    address = user_bcc_address("bench", TOKEN, BCC_DOMAIN)
    lookups = (Lookups if on else EveryCallReads)(db, settings)

    async def go() -> float:
        await lookups.recipient(address)
        t0 = time.perf_counter()
        for _ in range(rounds):
            answers = await asyncio.gather(*(lookups.recipient(address)
                                             for _ in range(SESSIONS)))
            assert all(not hasattr(a, "code") for a in answers), answers[0]
        return rounds * SESSIONS / (time.perf_counter() - t0)

    try:
        return asyncio.run(go())
    finally:
        db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--lookups", type=int, default=300, help="rounds of 20 RCPT lookups")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    requests = workload(PERSONS, args.messages)
    rows: dict[str, tuple[str, Callable[[Path, str, bool], float]]] = {
        "group writer": ("copies/s", lambda t, n, on: group_writer(t, n, on, requests)),
        "direct statements": ("copies/s",
                              lambda t, n, on: direct_statements(t, n, on, requests)),
        "single-flight lookups": ("RCPT/s",
                                  lambda t, n, on: single_flight(t, n, on, args.lookups)),
    }
    print(f"{'piece':<22} {'unit':>9} {'with':>9} {'without':>9} {'buys':>6}  "
          f"(medians of {args.repeat}, alternating)")
    with tempfile.TemporaryDirectory(prefix="bccd-bench-machinery-") as tmp:
        for label, (unit, fn) in rows.items():
            runs: dict[bool, list[float]] = {True: [], False: []}
            for i in range(args.repeat):
                for on in (True, False) if i % 2 == 0 else (False, True):
                    runs[on].append(fn(Path(tmp), f"{label[:6]}-{i}-{on}", on))
            with_, without = statistics.median(runs[True]), statistics.median(runs[False])
            print(f"{label:<22} {unit:>9} {with_:>9.1f} {without:>9.1f} {with_ / without:>5.2f}x"
                  f"  with: {', '.join(f'{x:.0f}' for x in runs[True])};"
                  f" without: {', '.join(f'{x:.0f}' for x in runs[False])}", flush=True)


if __name__ == "__main__":
    main()
