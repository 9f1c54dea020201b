"""SPEC §5.7/§5.12 with two ``bccd serve`` instances on one PostgreSQL database: copies
of a person's mail — new conversations and replies to earlier ones — arrive at both
instances while ``bccd deal create`` gives that person their first open deal. Whatever the interleaving, every thread ends linked to the deal
(exactly one open item) and every stored ``link_state`` is what the thread's links make of
it. (``tests/unit/linking/test_link_state_race.py`` forces each interleaving; this is the
same through the real interfaces, in rounds.)"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.linking_world import stale_link_states
from tests.support.mail import make_message, send
from tests.support.server import BccdServer

ROUNDS = 5
COPIES = 8

pytestmark = pytest.mark.slow


def test_a_deal_created_while_copies_are_filed_on_two_instances_links_every_thread(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    a = make_server(database_url=pg_url, start=False)
    a.cli("db", "upgrade", json_out=False)
    alice = a.setup_user("alice@acme.test")
    a.start()
    b = make_server(database_url=pg_url)
    rnd = random.Random(22)
    for r in range(ROUNDS):
        person = a.cli("person", "create", "--company", "acme", "--name", f"P{r}",
                       "--email", f"p{r}@client.test")
        for seed in range(2):  # conversations the replies below join
            raw = make_message(to=f"p{r}@client.test", subject=f"round {r} seed {seed}",
                               message_id=f"<r{r}s{seed}@acme.test>")
            assert send(a.smtp_port, alice["bcc_address"], raw)[0] == 250

        def copy(i: int, r: int = r) -> int:
            srv = (a, b)[i % 2]
            parent = f"<r{r}s{i % 2}@acme.test>" if i % 4 < 2 else None  # half are replies
            raw = make_message(to=f"p{r}@client.test", subject=f"round {r} copy {i}",
                               message_id=f"<r{r}c{i}@acme.test>", in_reply_to=parent,
                               references=parent)
            return send(srv.smtp_port, alice["bcc_address"], raw)[0]

        def deal(r: int = r, pid: int = person["id"]) -> Any:
            time.sleep(rnd.uniform(0.0, 0.15))
            return b.cli("deal", "create", "--company", "acme", "--title", f"Deal {r}",
                         "--person", str(pid))

        with ThreadPoolExecutor(COPIES + 1) as pool:
            made = pool.submit(deal)
            codes = list(pool.map(copy, range(COPIES)))
            created = made.result()
        assert codes == [250] * COPIES
        threads = a.cli("mail", "list", "alice@acme.test", "--person", str(person["id"]))
        assert len(threads) == 2 + COPIES // 2
        for th in threads:
            items = [(lk["kind"], lk["id"]) for lk in th["links"] if lk["kind"] == "deal"]
            assert (items, th["link_state"]) == ([("deal", created["id"])], "linked"), th
        assert stale_link_states(a) == []
