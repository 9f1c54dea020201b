"""SPEC §5.14 and §11 on PostgreSQL: a deal's timeline in a company with a million
messages — where every message was filed by two colleagues — is collapsed by the database
through indexes: the plan reaches the deal's threads through the links' (kind, entity)
index and their messages through the messages' thread index, and never scans the
messages table. The listing itself answers with each message once.

The data is bulk-inserted with ``generate_series`` (100,000 threads of 10 messages, pairs
of threads — alice's and bea's — holding the same Message-IDs; 500 deals of 200 threads),
then analysed, as a database that has been running would be."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from bccd.mailstore import read, timeline
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import User

THREADS = 100_000
PER_THREAD = 10
DEALS = 500

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the load alone is ~1 min


@pytest.fixture
def big(pg_url: str) -> Iterator[tuple[Database, dict[str, int]]]:
    upgrade(pg_url)
    db = Database(pg_url)
    ids: dict[str, int] = {}
    t0 = time.monotonic()
    with db.transaction() as s:
        def one(sql: str, **p: Any) -> int:
            return int(s.execute(text(sql), p).scalar_one())

        ids["company"] = one("INSERT INTO companies (slug, name, create_unknown_contacts,"
                             " created_at) VALUES ('big', 'Big', true, now()) RETURNING id")
        for name in ("alice", "bea", "cai"):
            ids[name] = one(
                "INSERT INTO users (company_id, email, name, is_admin, api_token_hash, bcc_token,"
                " sharing_default, linking_mode, email_links, disabled, created_at) VALUES"
                " (:c, :e, :n, false, :h, :t, 'shared', 'auto', 'app', false, now())"
                " RETURNING id", c=ids["company"], e=f"{name}@big.test", n=name,
                h=f"h-{name}", t=f"{name}tokentokentok")
        p = {"c": ids["company"], "a": ids["alice"], "b": ids["bea"]}
        s.execute(text("INSERT INTO persons (id, company_id, name, visible_to, created_at)"
                       " SELECT i, :c, 'Person ' || i, 'company', now()"
                       " FROM generate_series(1, :n) i"), {**p, "n": DEALS})
        s.execute(text("INSERT INTO items (id, company_id, kind, title, status, person_id,"
                       " visible_to, created_at) SELECT i, :c, 'deal', 'Deal ' || i, 'open', i,"
                       " 'company', now() FROM generate_series(1, :n) i"), {**p, "n": DEALS})
        s.execute(text(
            "INSERT INTO threads (id, company_id, owner_id, subject, visibility, archived,"
            " manual_items, link_state, created_at, last_message_at)"
            " SELECT t, :c, CASE WHEN t % 2 = 1 THEN :a ELSE :b END, 'Thread ' || ((t + 1) / 2),"
            " 'shared', false, false, 'linked', now(), now() - make_interval(secs => t)"
            " FROM generate_series(1, :n) t"), {**p, "n": THREADS})
        # the two threads of a pair hold copies of the same messages; alice's were filed first
        s.execute(text(
            "INSERT INTO messages (company_id, user_id, thread_id, dedup_key, message_id,"
            " direction, from_addr, from_name, subject, date, text_body, html_body, raw_size,"
            " raw_sha256, auth, created_at)"
            " SELECT :c, CASE WHEN t % 2 = 1 THEN :a ELSE :b END, t,"
            " 'm' || ((t + 1) / 2) || '-' || j || '@big.test',"
            " 'm' || ((t + 1) / 2) || '-' || j || '@big.test', 'incoming', 'p@client.test', '',"
            " 'Thread', now(), 'text', '', 100, 'x', '{}',"
            " now() + make_interval(secs => ((t + 1) % 2) + j * 10)"
            " FROM generate_series(1, :n) t, generate_series(0, :m) j"),
            {**p, "n": THREADS, "m": PER_THREAD - 1})
        for kind, entity in (("person", "((t - 1) / 2) % :d + 1"), ("deal", "((t - 1) / 2) % :d + 1")):
            s.execute(text(f"INSERT INTO links (thread_id, kind, entity_id, how, created_at)"
                           f" SELECT t, '{kind}', {entity}, 'auto', now()"
                           f" FROM generate_series(1, :n) t"), {"n": THREADS, "d": DEALS})
        for table in ("persons", "items", "threads"):
            s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                           f" (SELECT max(id) FROM {table}))"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    ids["load_seconds"] = int(time.monotonic() - t0)
    yield db, ids
    db.dispose()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_deal_timeline_among_a_million_messages_is_collapsed_through_indexes(
        big: tuple[Database, dict[str, int]]) -> None:
    db, ids = big
    with db.read() as s:
        assert s.scalar(text("SELECT count(*) FROM messages")) == THREADS * PER_THREAD
        for viewer in ("bea", "cai"):  # bea filed copies herself; cai none
            user = s.get(User, ids[viewer])
            assert user is not None
            selection = read._selection(user, read.Filters(deal=1))
            stmt = timeline.statement(user.id, selection, limit=50, offset=0)
            sql = str(stmt.compile(dialect=postgresql.dialect(),
                                   compile_kwargs={"literal_binds": True}))
            [[doc]] = s.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).all()
            plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]
            nodes = list(_nodes(plan["Plan"]))
            scans = {(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes
                     if "Scan" in n["Node Type"]}
            print(f"\n{viewer}: {plan['Execution Time']:.1f} ms, load {ids['load_seconds']} s,"
                  f" scans {sorted(map(str, scans))}")
            assert not [n for n in scans if n[0] == "Seq Scan" and n[1] in ("messages",
                                                                            "links", "threads")]
            assert any(index == "ix_links_kind_entity_id" for _, _, index in scans)
            assert any(rel == "messages" and index == "ix_messages_thread_id"
                       for _, rel, index in scans)

            page = read.list_threads(s, user, read.Filters(deal=1), limit=50)
            rows = page["threads"]
            # deal 1: 100 pairs of threads; each pair's messages once
            assert len(rows) == 50 and page["next_offset"] == 50
            owner = "bea@big.test" if viewer == "bea" else "alice@big.test"
            other = "alice@big.test" if viewer == "bea" else "bea@big.test"
            assert {r["owner"] for r in rows} == {owner}
            assert all(r["messages"] == PER_THREAD and r["also_filed_by"] == [other]
                       for r in rows)
            assert len(read.list_threads(s, user, read.Filters(deal=1), limit=None)[
                "threads"]) == 100
        assert s.scalar(select(User.id).where(User.email == "cai@big.test")) == ids["cai"]
