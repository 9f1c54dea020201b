"""What a tracking hit costs (SPEC §13): the public ``/t/o/<token>`` endpoint of a real
``bccd serve`` on SQLite, loaded by ``--concurrency`` HTTP clients for ``--seconds``.

The database is prepared directly (a user, ``--messages`` tracked sends, their tokens
signed with the server's key), so the run measures the endpoint alone: verifying the
token, the rate limit, recording the hit (one row read and written, one added,
group-committed), answering. Each request uses a token of its own message in turn, so
the per-token rate limit is not what is measured (``--messages`` × 10 requests a minute
at most pass). A second run sends tokens with a wrong MAC: the cost of refusing a forged
token, which touches no database.

    .venv/bin/python -m bench.tracking_hits [--seconds 10] [--concurrency 16] [--messages 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bccd import accounts
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import User
from bccd.store.models_compose import Send
from bccd.tracking import hits, tokens
from bccd.tracking.links import Plan
from tests.support.server import BccdServer

AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36")
SECRET = "bench-secret-key-" + "x" * 32


def prepare(url: str, n: int) -> list[str]:
    upgrade(url)
    db = Database(url)
    key = tokens.derive(SECRET)
    issued = int(time.time()) - 3600
    paths = []
    try:
        with db.transaction() as s:
            company = accounts.create_company(s, "Bench", "bench")
            user: User = accounts.create_user(s, "bench@bench.test", company).user
            for i in range(n):
                send = Send(user_id=user.id, rfc_message_id=f"{i}@bench.test",
                            envelope_from=user.email, pending=[], accepted=[], refused=[],
                            status="sent")
                s.add(send)
                s.flush()
                plan = Plan(10_000 + i, True, True, issued, "http://bench", key)
                hits.create(s, plan, ["https://example.com/"], send_id=send.id,
                            user_id=user.id, company_id=company.id)
                paths.append(f"/t/o/{tokens.issue(key, 'o', 10_000 + i, 0, issued)}")
    finally:
        db.dispose()
    return paths


async def load(base: str, paths: list[str], seconds: float, concurrency: int
               ) -> tuple[int, dict[int, int], list[float]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    done = 0
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def client() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, headers={"User-Agent": AGENT},
                                     timeout=30) as c:
            while time.monotonic() < deadline:
                path = paths[next(counter) % len(paths)]
                t0 = time.perf_counter()
                r = await c.get(path)
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, codes, latencies


def report(name: str, seconds: float, done: int, codes: dict[int, int],
           latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{name:>16}: {done / seconds:7.0f} req/s  p50 {q[49] * 1000:6.1f} ms  "
          f"p99 {q[98] * 1000:6.1f} ms  answers {dict(sorted(codes.items()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--messages", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = BccdServer(Path(tmp), {"security": {"secret_key": SECRET},
                                     "log": {"level": "warning"}})
        (Path(tmp) / "var").mkdir(mode=0o700)
        paths = prepare(f"sqlite:///{Path(tmp) / 'var' / 'bccd.sqlite3'}", args.messages)
        srv.start()
        try:
            done, codes, lat = asyncio.run(load(srv.http_url, paths, args.seconds,
                                                args.concurrency))
            report("recorded hits", args.seconds, done, codes, lat)
            forged = [p[:-2] + ("AA" if not p.endswith("AA") else "BA") for p in paths]
            done, codes, lat = asyncio.run(load(srv.http_url, forged, args.seconds,
                                                args.concurrency))
            report("forged tokens", args.seconds, done, codes, lat)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
