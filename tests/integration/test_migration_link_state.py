"""Revision 0009 on SQLite and PostgreSQL over a database that already holds mail: every
stored thread gets the ``link_state`` its links, suggestions and owner's mode call for
(SPEC §5.12), and the organizations of its persons that its owner may see (SPEC §5.11);
nothing stored is lost (on SQLite, recreating ``threads`` would cascade to its messages
and links), and the downgrade gives the column back."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import create_engine, text

from bccd.linking import linkstate
from bccd.store.db import Database
from bccd.store.migrate import alembic_config, upgrade


def _insert(conn: Any, sql: str, **params: Any) -> int:
    return int(conn.execute(text(sql + " RETURNING id"), params).scalar_one())


def test_the_upgrade_fills_link_states_and_organization_links(db_url: str) -> None:
    upgrade(db_url, "0008")
    engine = create_engine(db_url)
    now = "CURRENT_TIMESTAMP"
    with engine.begin() as c:
        co = _insert(c, f"INSERT INTO companies (slug, name, create_unknown_contacts, created_at)"
                        f" VALUES ('m', 'M', true, {now})")
        users = {}
        for name, mode in (("auto", "auto"), ("manual", "manual"), ("other", "auto")):
            users[name] = _insert(
                c, "INSERT INTO users (company_id, email, name, is_admin, api_token_hash,"
                   " bcc_token, sharing_default, linking_mode, email_links, disabled, created_at)"
                   f" VALUES (:c, :e, '', false, :h, :t, 'private', :m, 'app', false, {now})",
                c=co, e=f"{name}@m.test", h=f"h{name}", t=f"{name}tokentokentoken", m=mode)
        org = _insert(c, f"INSERT INTO organizations (company_id, name, visible_to, created_at)"
                         f" VALUES (:c, 'Org', 'company', {now})", c=co)
        hidden = _insert(c, f"INSERT INTO organizations (company_id, name, owner_id, visible_to,"
                            f" created_at) VALUES (:c, 'Hidden', :o, 'owner', {now})",
                         c=co, o=users["other"])
        pat = _insert(c, f"INSERT INTO persons (company_id, name, organization_id, visible_to,"
                         f" created_at) VALUES (:c, 'Pat', :o, 'company', {now})", c=co, o=org)
        quin = _insert(c, f"INSERT INTO persons (company_id, name, organization_id, visible_to,"
                          f" created_at) VALUES (:c, 'Quin', :o, 'company', {now})",
                       c=co, o=hidden)
        deal = _insert(c, f"INSERT INTO items (company_id, kind, title, status, visible_to,"
                          f" created_at) VALUES (:c, 'deal', 'D', 'open', 'company', {now})", c=co)

        def thread(owner: str, *, persons: tuple[int, ...] = (), item: bool = False,
                   suggestion: bool = False) -> int:
            t = _insert(c, "INSERT INTO threads (company_id, owner_id, subject, visibility,"
                           " archived, manual_items, created_at, last_message_at) VALUES"
                           f" (:c, :o, '', 'private', false, false, {now}, {now})",
                        c=co, o=users[owner])
            links = [("person", p) for p in persons] + ([("deal", deal)] if item else [])
            for kind, eid in links:
                c.execute(text("INSERT INTO links (thread_id, kind, entity_id, how, created_at)"
                               f" VALUES (:t, :k, :e, 'auto', {now})"), {"t": t, "k": kind, "e": eid})
            if suggestion:
                c.execute(text("INSERT INTO suggestions (thread_id, kind, entity_id)"
                               " VALUES (:t, 'deal', :e)"), {"t": t, "e": deal})
            return t

        want = {
            thread("auto", persons=(pat,), item=True): "linked",
            thread("auto", persons=(pat,), suggestion=True): "needs_choice",
            thread("auto", persons=(quin,)): "no_open_item",
            thread("auto"): "no_person",
            thread("manual", persons=(pat,), suggestion=True): "manual_mode",
        }
        other = thread("other", persons=(quin,))
        c.execute(text(
            "INSERT INTO messages (company_id, user_id, thread_id, dedup_key, direction,"
            " from_addr, from_name, subject, text_body, html_body, raw_size, raw_sha256, auth,"
            f" created_at) VALUES (:c, :u, :t, 'k', 'incoming', '', '', '', '', '', 0, 'x', '{{}}',"
            f" {now})"), {"c": co, "u": users["other"], "t": other})
        counts = [int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                  for t in ("messages", "links", "suggestions", "threads")]
    engine.dispose()

    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.read() as s:
            states = {int(i): str(v) for i, v in s.execute(text(
                "SELECT id, link_state FROM threads"))}
            assert {t: states[t] for t in want} == want
            assert linkstate.stale(s) == []
            org_links = {(int(t), int(e)) for t, e in s.execute(text(
                "SELECT thread_id, entity_id FROM links WHERE kind = 'organization'"
                " AND how = 'auto'"))}
            after = [int(s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                     for t in ("messages", "links", "suggestions", "threads")]
        ts = list(want)
        # Pat's organization on his threads; Quin's only on the thread of its owner
        assert org_links == {(ts[0], org), (ts[1], org), (ts[4], org), (other, hidden)}
        assert after == [counts[0], counts[1] + len(org_links), *counts[2:]]
    finally:
        db.dispose()
    command.downgrade(alembic_config(db_url), "0008")  # and back
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            assert int(c.execute(text("SELECT count(*) FROM messages")).scalar_one()) == counts[0]
            assert "link_state" not in c.execute(text("SELECT * FROM threads")).keys()
    finally:
        engine.dispose()
