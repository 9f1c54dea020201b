"""SPEC §5.12 on SQLite and PostgreSQL, through real SMTP, the CLI and the API: every
thread has a ``link_state`` saying why it is (not) linked to a deal, lead or project —
each state with its cause as a table, then one thread through every change that can move
it (filing, retroactive linking, an item created or closed, linking and unlinking by
hand, choosing a suggestion, the linking mode, a person deleted). After every step the
stored state is what the rule makes of the stored links (``stale_link_states``).

(``automated`` — auto-replies and bulk mail kept ``unlinked``, SPEC §5.10 — needs mail
categories; ``tests/unit/linking/test_link_state_rule.py`` holds its place in the rule.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.linking_world import Tenant, stale_link_states
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("5.12")

BOB = "bob@client.test"


@dataclass
class Case:
    id: str
    state: str
    persons: dict[str, list[str]] = field(default_factory=dict)
    items: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    alice: dict[str, str] = field(default_factory=dict)
    company: str | None = None                 # create_unknown_contacts on|off
    blocked: list[str] = field(default_factory=list)
    colleague: bool = False                    # eve, who owns the owner-only items
    to: str = f"Bob <{BOB}>"
    cc: str | None = None
    pinned: str | None = None
    suggestions: int = 0


CASES = [
    Case("linked_to_the_single_open_item", "linked", persons={"Bob": [BOB]},
         items=[("deal", "D", "Bob", "open")]),
    Case("linked_by_a_pinned_address_among_several", "linked", persons={"Bob": [BOB]},
         items=[("deal", "A", "Bob", "open"), ("lead", "B", "Bob", "open")], pinned="A"),
    Case("needs_choice_with_several_open_items", "needs_choice", persons={"Bob": [BOB]},
         items=[("deal", "A", "Bob", "open"), ("project", "B", "Bob", "open")],
         suggestions=2),
    Case("needs_choice_across_the_persons_of_the_thread", "needs_choice",
         persons={"Bob": [BOB], "Carol": ["carol@client.test"]},
         items=[("deal", "A", "Bob", "open"), ("lead", "B", "Carol", "open")],
         cc="carol@client.test", suggestions=2),
    Case("no_open_item_for_a_known_person_without_items", "no_open_item",
         persons={"Bob": [BOB]}),
    Case("no_open_item_for_a_person_created_from_the_copy", "no_open_item",
         to="Dan <dan@newco.test>"),
    Case("no_open_item_when_every_item_is_closed", "no_open_item", persons={"Bob": [BOB]},
         items=[("deal", "W", "Bob", "won"), ("project", "C", "Bob", "closed")]),
    Case("no_open_item_when_the_only_item_is_a_colleagues_private_one", "no_open_item",
         persons={"Bob": [BOB]}, colleague=True, items=[("deal", "E", "Bob", "open:owner=eve")]),
    Case("no_person_when_unknown_contacts_are_not_created", "no_person", company="off",
         to="Dan <dan@newco.test>"),
    Case("no_person_for_mail_to_colleagues_only", "no_person", to="Eve <eve@{domain}>"),
    Case("no_person_when_the_person_is_blocked", "no_person", persons={"Bob": [BOB]},
         items=[("deal", "D", "Bob", "open")], blocked=[BOB], cc="Eve <eve@{domain}>"),
    Case("manual_mode_with_a_single_candidate", "manual_mode", persons={"Bob": [BOB]},
         items=[("deal", "D", "Bob", "open")], alice={"linking": "manual"}, suggestions=1),
    Case("manual_mode_without_candidates", "manual_mode", persons={"Bob": [BOB]},
         alice={"linking": "manual"}),
    Case("manual_mode_is_not_the_reason_when_there_is_no_person", "no_person",
         company="off", alice={"linking": "manual"}, to="dan@newco.test"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_link_state_has_its_cause(srv: BccdServer, case: Case) -> None:
    t = Tenant(srv, case.id[:12])
    if case.colleague:
        t.user("eve")
    if case.company:
        t.company_set(case.company)
    if case.alice:
        t.set_user("alice", **case.alice)
    for pattern in case.blocked:
        t.block("alice", pattern)
    for name, emails in case.persons.items():
        t.person(name, *emails)
    for kind, name, person, status in case.items:
        status, _, owner = status.partition(":owner=")
        t.item(kind, name, person, status, owner=owner or None,
               visible_to="owner" if owner else None)
    rcpts = [t.alice["bcc_address"]] + ([t.addresses[case.pinned]] if case.pinned else [])
    raw = t.mail(to=case.to.format(domain=t.domain),
                 cc=case.cc.format(domain=t.domain) if case.cc else None, subject=case.id)
    assert t.send(raw, to=rcpts)[0] == 250

    thread = t.thread()
    assert thread["link_state"] == case.state
    assert len(thread["suggestions"]) == case.suggestions
    assert t.show(thread["thread_id"])["link_state"] == case.state
    needs = t.threads("alice", "--needs-linking")
    assert [th["thread_id"] for th in needs] == (
        [thread["thread_id"]] if case.state == "needs_choice" else [])
    with t.api() as api:
        for state in ("linked", "needs_choice", "no_open_item", "no_person", "manual_mode"):
            page = api.get("/threads", params={"link_state": state}).json()
            assert [th["thread_id"] for th in page["threads"]] == (
                [thread["thread_id"]] if state == case.state else [])
        assert api.get(f"/threads/{thread['thread_id']}").json()["link_state"] == case.state
        bad = api.get("/threads", params={"link_state": "sometimes"})
        assert bad.status_code == 422 and "link_state" in bad.text
    assert stale_link_states(srv) == []


def _admin(t: Tenant) -> Any:
    return t.api("root")


def test_the_state_follows_every_change(srv: BccdServer) -> None:
    t = Tenant(srv, "transitions")
    t.user("root", admin=True)
    t.company_set("off")
    first = t.mail(to=f"Bob <{BOB}>", subject="first", message_id="<first@t.test>")
    t.send(first)
    t.send(t.mail(to="Bob <bob@home.test>", subject="home"))
    t.send(t.mail(to="someone@else.test", subject="stranger"))

    def expect(**want: str) -> None:  # subject → state
        got = t.states()
        assert {k: got[k] for k in want} == want
        assert stale_link_states(srv) == []

    expect(first="no_person", home="no_person", stranger="no_person")  # filing

    with _admin(t) as admin:  # retroactive: a person created by the CRM
        r = admin.put("/admin/persons/p-bob", json={"name": "Bob", "emails": [BOB]})
        assert r.status_code == 200 and r.json()["relinked_threads"] == 1
        t.ids["Bob"], t.kinds["Bob"] = r.json()["id"], "person"
    expect(first="no_open_item", home="no_person")

    t.item("deal", "Deal", "Bob")  # retroactive: an item created
    expect(first="linked")
    srv.cli("person", "add-email", str(t.ids["Bob"]), "bob@home.test")  # an address added
    expect(home="linked")

    tid = next(th["thread_id"] for th in t.threads() if th["subject"] == "first")
    srv.cli("mail", "unlink", str(tid), "--deal", str(t.ids["Deal"]))  # unlinked by hand
    expect(first="needs_choice")
    t.item("lead", "Lead", "Bob")  # a second open item: both are suggestions
    expect(first="needs_choice")
    thread = next(th for th in t.threads("alice", "--needs-linking") if th["thread_id"] == tid)
    assert t.named_suggestions(thread["suggestions"]) == {("deal", "Deal"), ("lead", "Lead")}

    with t.api() as api:  # choosing a suggestion links it by hand and clears the others
        row = api.post(f"/threads/{tid}/links", json={"kind": "lead", "id": t.ids["Lead"]}).json()
        assert row["link_state"] == "linked" and row["suggestions"] == []
        assert ("lead", "Lead", "manual") in t.named(row["links"])
    expect(first="linked")
    srv.cli("mail", "unlink", str(tid), "--lead", str(t.ids["Lead"]))
    expect(first="needs_choice")

    srv.cli("deal", "set", str(t.ids["Deal"]), "--status", "lost")  # items closed
    expect(first="needs_choice")
    srv.cli("lead", "set", str(t.ids["Lead"]), "--status", "archived")
    expect(first="no_open_item", home="linked")  # a link made stays

    t.set_user("alice", linking="manual")  # the linking mode
    expect(first="manual_mode", home="linked", stranger="no_person")
    t.set_user("alice", linking="auto")
    expect(first="no_open_item")

    with _admin(t) as admin:
        r = admin.put("/admin/persons/p-carol", json={"name": "Carol",
                                                      "emails": ["carol@client.test"]})
        t.ids["Carol"], t.kinds["Carol"] = r.json()["id"], "person"
    t.item("project", "Rollout", "Carol")
    reply = t.mail(to=f"Bob <{BOB}>", cc="carol@client.test", subject="Re: first",
                   message_id="<reply@t.test>", in_reply_to="<first@t.test>")
    t.send(reply)  # filing into the thread: a new candidate, but the user chose by hand
    expect(first="needs_choice")

    stranger = next(th["thread_id"] for th in t.threads() if th["subject"] == "stranger")
    out = srv.cli("mail", "link", str(stranger), "--person", str(t.ids["Carol"]))  # by hand
    assert out["link_state"] == "linked"
    expect(stranger="linked")

    with _admin(t) as admin:  # persons deleted
        assert admin.delete("/admin/persons/p-carol").status_code == 204
        expect(first="no_open_item", stranger="linked")  # its item link stays
        assert admin.delete("/admin/persons/p-bob").status_code == 204
    expect(first="no_person", home="linked")
