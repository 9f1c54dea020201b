"""SPEC §5.12: the link state is one rule with two forms — ``linkstate.state`` (Python,
used where the linking rule has just decided) and ``linkstate.state_sql`` (SQL, used to
recompute stored threads) — held to the same answers for every combination of facts, on
SQLite and PostgreSQL, and both follow the order the rule documents."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import false, literal, select, true

from bccd.linking import linkstate
from bccd.linking.linkstate import Facts
from bccd.store.db import Database
from bccd.store.models import Item, Link, Person, Suggestion, Thread, User
from tests.unit.builders import company_and_user

pytestmark = pytest.mark.spec("5.12")

EXPECTED = [  # (item_linked, automated, persons, manual_mode, suggestions) → state
    ((True, True, False, True, True), "linked"),
    ((True, False, True, False, False), "linked"),
    ((False, True, True, False, True), "automated"),
    ((False, False, False, True, True), "no_person"),
    ((False, False, True, True, True), "manual_mode"),
    ((False, False, True, True, False), "manual_mode"),
    ((False, False, True, False, True), "needs_choice"),
    ((False, False, True, False, False), "no_open_item"),
]


def test_the_python_form_follows_the_documented_order() -> None:
    for (item, automated, persons, manual, sugg), want in EXPECTED:
        assert linkstate.state(Facts(item_linked=item, automated=automated, persons=persons,
                                     manual_mode=manual, suggestions=sugg)) == want
    assert set(linkstate.STATES) == {w for _, w in EXPECTED}


def test_the_sql_form_gives_the_same_answer_for_every_combination(function_db: Database) -> None:
    combos = list(itertools.product((False, True), repeat=5))
    with function_db.read() as s:
        for item, automated, persons, manual, sugg in combos:
            got = s.scalar(select(linkstate.state_sql(
                item_linked=true() if item else false(), persons=true() if persons else false(),
                manual_mode=true() if manual else false(),
                suggestions=true() if sugg else false(),
                automated=literal(automated))))
            assert got == linkstate.state(Facts(item_linked=item, automated=automated,
                                                persons=persons, manual_mode=manual,
                                                suggestions=sugg))


def test_refresh_recomputes_stored_threads_from_their_links_suggestions_and_owner(
        function_db: Database) -> None:
    """Every combination of stored facts, recomputed by ``refresh`` (the SQL form over
    real rows) and by ``mode_changed``, matches the Python form; ``stale`` finds none."""
    with function_db.transaction() as s:
        c, auto = company_and_user(s)
        manual = User(company_id=c.id, email="mo@acme.test", api_token_hash="h2",
                      bcc_token="m" * 16, linking_mode="manual")
        s.add(manual)
        p = Person(company_id=c.id, name="P")
        deal = Item(company_id=c.id, kind="deal", title="D")
        s.add_all([p, deal])
        s.flush()
        want: dict[int, str] = {}
        for item, persons, is_manual, sugg in itertools.product((False, True), repeat=4):
            owner = manual if is_manual else auto
            t = Thread(company_id=c.id, owner_id=owner.id, link_state="linked")
            s.add(t)
            s.flush()
            if item:
                s.add(Link(thread_id=t.id, kind="deal", entity_id=deal.id, how="auto"))
            if persons:
                s.add(Link(thread_id=t.id, kind="person", entity_id=p.id, how="auto"))
            if sugg:
                s.add(Suggestion(thread_id=t.id, kind="deal", entity_id=deal.id))
            want[t.id] = linkstate.state(Facts(item_linked=item, persons=persons,
                                               manual_mode=is_manual, suggestions=sugg))
        s.flush()
        assert {r[0] for r in linkstate.stale(s, c.id)} == {t for t, v in want.items()
                                                             if v != "linked"}
        linkstate.refresh(s, list(want))
        assert {r[0]: r[1] for r in s.execute(select(Thread.id, Thread.link_state))} == want
        assert linkstate.stale(s, c.id) == []

        # the owner switches modes: the states that depend on it follow, the others stay
        auto.linking_mode = "manual"
        linkstate.mode_changed(s, auto.id)
        s.expire_all()
        assert linkstate.stale(s, c.id) == []
        states = {r[0]: r[1] for r in s.execute(select(Thread.id, Thread.link_state)
                                                .where(Thread.owner_id == auto.id))}
        assert sorted(set(states.values())) == ["linked", "manual_mode", "no_person"]
