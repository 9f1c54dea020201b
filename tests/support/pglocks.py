"""Forcing an interleaving on PostgreSQL: run one side in a thread (``in_thread``) and
wait until PostgreSQL reports a session of the test's database waiting on another's lock
(``wait_for_a_lock_wait``) — the other side is then held at the point that matters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text


def wait_for_a_lock_wait(url: str, timeout: float = 20.0) -> None:
    """Until some session of this database (others share the server) waits on a lock
    held by another."""
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'")).scalar():
                    return
            time.sleep(0.02)
    finally:
        engine.dispose()
    raise AssertionError("no transaction waited for the other's lock")


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``fn`` started in a thread; its result (or the exception it raised) lands in the
    list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # reported by the test
            out.append(exc)

    th = threading.Thread(target=run)
    th.start()
    return th, out
