"""Linking cost versus company size (SPEC §5.5/§5.6, §11): files the same workload of
messages into a company with 1,000 and with 1,000,000 persons and prints the per-message
rate of each and their ratio. Every lookup the linking layer makes is an indexed one, so
the ratio should stay close to 1.

Each message is filed through ``bccd.ingest.filing.file_copy`` — dedup, blocklist,
threading, person match (and creation of one unknown counterpart), the deal/lead/project
rule and the participant rows, in one committed transaction — i.e. everything after
parsing and authentication, which do not depend on the company's size. Persons (and one
open deal per 20 persons) are bulk-inserted with SQL. The messages are filed in rounds
and the fastest round is reported, so that other load on the machine does not pass for
a slowdown.

    .venv/bin/python -m bench.linking_scale [--messages 400] [--sizes 1000,1000000]
                                            [--database-url postgresql+psycopg://…]

With ``--database-url`` the database must be empty (it is migrated here); by default
each size gets a fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.outcome import Disposition
from bccd.ingest.parse import parse
from bccd.ingest.types import Source
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from tests.support.mail import make_message

BCC_DOMAIN = "bcc.localhost"
CHUNK = 200_000
ROUNDS = 5  # the best round counts: other load on the machine only ever slows a round down


def populate(db: Database, persons: int) -> int:
    """Company, one user, ``persons`` persons with one address each, an open deal per 20."""
    ts = "'2026-01-01 00:00:00'" if db.is_sqlite else "now()"
    with db.transaction() as s:
        s.execute(text(f"INSERT INTO companies (slug, name, create_unknown_contacts, created_at)"
                       f" VALUES ('bench', 'Bench', true, {ts})"))
        cid = int(s.execute(text("SELECT id FROM companies WHERE slug = 'bench'")).scalar_one())
        s.execute(text(
            "INSERT INTO users (company_id, email, name, is_admin, api_token_hash, bcc_token,"
            " sharing_default, linking_mode, email_links, disabled, created_at) VALUES"
            f" (:c, 'alice@bench.test', 'Alice', false, 'h', 'benchbenchbench1', 'private',"
            f" 'auto', 'app', false, {ts})"), {"c": cid})
    for lo in range(1, persons + 1, CHUNK):
        hi = min(persons, lo + CHUNK - 1)
        series = ("WITH RECURSIVE n(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i < :hi)"
                  if db.is_sqlite else
                  "WITH n(i) AS (SELECT generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)))")
        with db.transaction() as s:
            s.execute(text(f"{series} INSERT INTO persons (id, company_id, name, visible_to,"
                           f" created_at) SELECT i, :c, 'Person ' || i, 'company', {ts} FROM n"),
                      {"lo": lo, "hi": hi, "c": cid})
            s.execute(text(f"{series} INSERT INTO person_emails (company_id, person_id, email)"
                           " SELECT :c, i, 'p' || i || '@client' || (i % 1000) || '.test' FROM n"),
                      {"lo": lo, "hi": hi, "c": cid})
            s.execute(text(f"{series} INSERT INTO items (company_id, kind, title, status,"
                           f" person_id, visible_to, created_at) SELECT :c, 'deal',"
                           f" 'Deal ' || i, 'open', i, 'company', {ts} FROM n WHERE i % 20 = 0"),
                      {"lo": lo, "hi": hi, "c": cid})
    if not db.is_sqlite:
        with db.transaction() as s:
            s.execute(text("SELECT setval(pg_get_serial_sequence('persons', 'id'),"
                           " (SELECT max(id) FROM persons))"))
        # settle the bulk load first, so autovacuum and the checkpointer do not run
        # during the measurement
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
    else:
        with db.transaction() as s:
            s.execute(text("ANALYZE"))
    with db.read() as s:
        return int(s.execute(text("SELECT id FROM users WHERE email = 'alice@bench.test'"))
                   .scalar_one())


def workload(persons: int, messages: int, seed: int = 7) -> list[filing.FileRequest]:
    rnd = random.Random(seed)
    out = []
    for m in range(messages):
        a, b = rnd.randint(1, persons), rnd.randint(1, persons)
        to = f"P <p{a}@client{a % 1000}.test>, Q <p{b}@client{b % 1000}.test>"
        cc = f"New <new{m}@fresh{m % 50}.test>"
        refs = f"<m{m - 1}@bench.test>" if m % 3 else None  # a third of them are replies
        raw = make_message(frm="Alice <alice@bench.test>", to=to, cc=cc, subject=f"Msg {m}",
                           message_id=f"<m{m}@bench.test>", in_reply_to=refs, references=refs)
        out.append(raw)
    return [filing.FileRequest(
        user_id=0, raw=raw, parsed=parse(raw, max_header_size=512 * 1024), source=Source.BCC,
        direction="outgoing", sender=Addr("alice@bench.test", "Alice"), auth=SKIPPED,
        bcc_domain=BCC_DOMAIN, raw_sha256=hashlib.sha256(raw).hexdigest()) for raw in out]


def measure(url: str, persons: int, messages: int, blob_dir: Path) -> tuple[float, float]:
    upgrade(url)
    db = Database(url)
    try:
        t0 = time.perf_counter()
        user_id = populate(db, persons)
        setup = time.perf_counter() - t0
        reqs = [dataclasses.replace(r, user_id=user_id) for r in workload(persons, messages)]
        blobs = BlobStore(blob_dir)
        for r in reqs[:10]:  # warm caches and the connection pool
            filing.file_copy(db, blobs, r)
        rest = reqs[10:]
        size = max(1, len(rest) // ROUNDS)
        best = float("inf")
        for i in range(0, len(rest), size):
            chunk = rest[i:i + size]
            t0 = time.perf_counter()
            for r in chunk:
                out = filing.file_copy(db, blobs, r)
                assert out.disposition is Disposition.STORED, out
            best = min(best, (time.perf_counter() - t0) / len(chunk))
        return 1 / best, setup
    finally:
        db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--database-url", help="an empty database per run (default: SQLite)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bccd-bench-") as tmp:
        for i, n in enumerate(sizes):
            url = args.database_url or f"sqlite:///{Path(tmp) / f'scale-{i}-{n}.sqlite3'}"
            rate, setup = measure(url, n, args.messages, Path(tmp) / f"blobs-{i}")
            rates[n] = rate
            print(f"{n:>9,} persons: {rate:8.1f} messages/s linked and stored"
                  f"  ({1000 / rate:.2f} ms/message; setup {setup:.1f}s)", flush=True)
            if args.database_url and n != sizes[-1]:
                print("  (reusing --database-url: run one size per empty database)")
                break
    if len(rates) >= 2:
        small, large = rates[sizes[0]], rates[sizes[-1]]
        print(f"ratio {sizes[0]:,} / {sizes[-1]:,} persons: {small / large:.2f}"
              " (1.00 = no slowdown with company size)")


if __name__ == "__main__":
    main()
