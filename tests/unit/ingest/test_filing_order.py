"""``FilingOrder``: copies parsed at once are handed to the database in the order their
turns were taken (IMAP: UID order), whichever parse ends first; a copy that fails passes
its turn on."""

from __future__ import annotations

import asyncio

from bccd.ingest.types import FilingOrder, Turn


async def _copy(turn: Turn, name: str, parse_seconds: float, filed: list[str],
                fail: bool = False) -> None:
    try:
        await asyncio.sleep(parse_seconds)  # parsing, in a worker thread
        if fail:
            raise ValueError("unparseable")
        await turn.wait()
        filed.append(name)  # queued for the database
    except ValueError:
        pass
    finally:
        turn.done()


async def test_copies_are_filed_in_turn_order_whatever_order_parsing_ends() -> None:
    order = FilingOrder()
    filed: list[str] = []
    await asyncio.gather(*[
        _copy(order.take(), name, seconds, filed)
        for name, seconds in [("uid1", 0.05), ("uid2", 0.03), ("uid3", 0.0), ("uid4", 0.01)]])
    assert filed == ["uid1", "uid2", "uid3", "uid4"]


async def test_a_copy_that_fails_passes_its_turn_on() -> None:
    order = FilingOrder()
    filed: list[str] = []
    await asyncio.wait_for(asyncio.gather(
        _copy(order.take(), "uid1", 0.0, filed),
        _copy(order.take(), "uid2", 0.02, filed, fail=True),
        _copy(order.take(), "uid3", 0.0, filed)), 5)
    assert filed == ["uid1", "uid3"]
