"""SPEC §5.2/§5.5/§5.6/§5.8 as a table: given persons, items and settings, when this
copy arrives over real SMTP, then these links, suggestions, persons and visibility.
Every case runs on SQLite and PostgreSQL, each in its own company."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.linking_world import Tenant
from tests.support.server import BccdServer

pytestmark = [pytest.mark.spec("5.2"), pytest.mark.spec("5.5"), pytest.mark.spec("5.6"),
              pytest.mark.spec("5.8")]

BOB = "bob@client.test"
CAROL = "carol@client.test"


@dataclass
class Case:
    id: str
    persons: dict[str, list[str]] = field(default_factory=dict)   # name → emails
    items: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    # (kind, name, person name, status)
    alice: dict[str, str] = field(default_factory=dict)            # user set flags
    company: dict[str, str] = field(default_factory=dict)          # company set flags
    blocked: list[str] = field(default_factory=list)
    colleague: dict[str, Any] | None = None                        # a second user
    to: str = f"Bob <{BOB}>"
    cc: str | None = None
    pinned: str | None = None           # send to this item's address too
    only_pinned: bool = False           # …and not to alice's own address
    links: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, name, how)
    suggestions: set[tuple[str, str]] = field(default_factory=set)
    created: dict[str, str] = field(default_factory=dict)          # email → new person name
    not_created: list[str] = field(default_factory=list)
    visibility: str = "private"


CASES = [
    Case("known_person_is_matched_case_insensitively",
         persons={"Bob": [BOB]}, to="Bob <BOB@Client.TEST>",
         links={("person", "Bob", "auto")}),
    Case("unknown_counterpart_becomes_a_person_named_from_display_name",
         to="Carol Jones <carol@newco.test>",
         links={("person", "Carol Jones", "auto")},
         created={"carol@newco.test": "Carol Jones"}),
    Case("unknown_counterpart_without_display_name_is_named_by_local_part",
         to="dave@newco.test", links={("person", "dave", "auto")},
         created={"dave@newco.test": "dave"}),
    Case("no_person_is_created_when_create_unknown_contacts_is_off",
         company={"create_unknown_contacts": "off"}, to="Carol <carol@newco.test>",
         not_created=["carol@newco.test"]),
    Case("colleagues_and_bcc_domain_addresses_never_become_persons",
         to="Colleague <colleague@{domain}>", cc="Other <other+x@bcc.localhost>",
         not_created=["colleague@{domain}", "other+x@bcc.localhost"]),
    Case("the_single_open_deal_of_the_person_is_linked",
         persons={"Bob": [BOB]}, items=[("deal", "Big deal", "Bob", "open")],
         links={("person", "Bob", "auto"), ("deal", "Big deal", "auto")}),
    Case("a_single_open_lead_or_project_is_linked_the_same_way",
         persons={"Bob": [BOB]}, items=[("project", "Rollout", "Bob", "open"),
                                        ("lead", "Old lead", "Bob", "archived")],
         links={("person", "Bob", "auto"), ("project", "Rollout", "auto")}),
    Case("deal_and_lead_together_are_two_candidates_so_only_suggestions",
         persons={"Bob": [BOB]},
         items=[("deal", "Deal A", "Bob", "open"), ("lead", "Lead B", "Bob", "open")],
         links={("person", "Bob", "auto")},
         suggestions={("deal", "Deal A"), ("lead", "Lead B")}),
    Case("open_items_of_all_linked_persons_are_counted_together",
         persons={"Bob": [BOB], "Carol": [CAROL]},
         items=[("deal", "Bob deal", "Bob", "open"), ("project", "Carol project", "Carol", "open")],
         cc=f"Carol <{CAROL}>",
         links={("person", "Bob", "auto"), ("person", "Carol", "auto")},
         suggestions={("deal", "Bob deal"), ("project", "Carol project")}),
    Case("won_lost_and_closed_items_are_never_linked_or_suggested",
         persons={"Bob": [BOB]},
         items=[("deal", "Won", "Bob", "won"), ("deal", "Lost", "Bob", "lost"),
                ("project", "Done", "Bob", "closed")],
         links={("person", "Bob", "auto")}),
    Case("a_closed_item_does_not_count_against_the_single_open_one",
         persons={"Bob": [BOB]},
         items=[("deal", "Won", "Bob", "won"), ("deal", "Open", "Bob", "open")],
         links={("person", "Bob", "auto"), ("deal", "Open", "auto")}),
    Case("manual_mode_links_persons_only_and_suggests_the_item",
         persons={"Bob": [BOB]}, items=[("deal", "Big deal", "Bob", "open")],
         alice={"linking": "manual"},
         links={("person", "Bob", "auto")}, suggestions={("deal", "Big deal")}),
    Case("pinned_address_links_its_item_even_among_several_candidates",
         persons={"Bob": [BOB]},
         items=[("deal", "Deal A", "Bob", "open"), ("deal", "Deal B", "Bob", "open")],
         pinned="Deal B", only_pinned=True,
         links={("person", "Bob", "auto"), ("deal", "Deal B", "address")}),
    Case("copy_to_own_and_pinned_address_is_one_message_with_the_pinned_link",
         persons={"Bob": [BOB]}, items=[("deal", "Deal A", "Bob", "open"),
                                        ("lead", "Lead P", None, "open")],
         pinned="Lead P",
         links={("person", "Bob", "auto"), ("lead", "Lead P", "address")}),
    Case("pinned_address_is_honoured_in_manual_mode",
         persons={"Bob": [BOB]}, items=[("deal", "Deal A", "Bob", "open")],
         alice={"linking": "manual"}, pinned="Deal A", only_pinned=True,
         links={("person", "Bob", "auto"), ("deal", "Deal A", "address")}),
    Case("an_item_only_its_owner_may_see_is_not_a_candidate_for_others",
         persons={"Bob": [BOB]}, colleague={"local": "eve"},
         items=[("deal", "Eve private", "Bob", "open:owner=eve")],
         links={("person", "Bob", "auto")}),
    Case("new_thread_takes_the_owners_sharing_default",
         persons={"Bob": [BOB]}, alice={"sharing": "shared"},
         links={("person", "Bob", "auto")}, visibility="shared"),
    Case("blocked_counterpart_is_not_linked_nor_created_the_others_are",
         persons={"Bob": [BOB]}, blocked=["carol@client.test"], cc=f"Carol <{CAROL}>",
         links={("person", "Bob", "auto")}, not_created=[CAROL]),
    Case("blocked_domain_covers_subdomains_for_linking",
         blocked=["@spam.test"], to="Bob <bob@mx.spam.test>", cc="Dan <dan@ok.test>",
         links={("person", "Dan", "auto")}, created={"dan@ok.test": "Dan"},
         not_created=["bob@mx.spam.test"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_linking_rule(srv: BccdServer, case: Case) -> None:
    t = Tenant(srv, case.id[:12])
    if case.colleague:
        t.user(case.colleague["local"])
    if case.company:
        t.company_set(**case.company)
    if case.alice:
        t.set_user("alice", **case.alice)
    for pattern in case.blocked:
        t.block("alice", pattern)
    for name, emails in case.persons.items():
        t.person(name, *emails)
    for kind, name, person, status in case.items:
        status, _, owner = status.partition(":owner=")
        t.item(kind, name, person, status,
               owner=owner or None, visible_to="owner" if owner else None)

    rcpts = [] if case.only_pinned else [t.alice["bcc_address"]]
    if case.pinned:
        rcpts.append(t.addresses[case.pinned])
    raw = t.mail(to=case.to.format(domain=t.domain),
                 cc=case.cc.format(domain=t.domain) if case.cc else None, subject=case.id)
    code, _ = t.send(raw, to=rcpts)
    assert code == 250

    persons = t.persons()
    for email, name in case.created.items():
        assert persons[email]["name"] == name
        t.ids[name], t.kinds[name] = persons[email]["id"], "person"
    for email in case.not_created:
        assert email.format(domain=t.domain) not in persons
    thread = t.thread()
    assert thread["messages"] == 1
    assert t.named(thread["links"]) == case.links
    assert t.named_suggestions(thread["suggestions"]) == case.suggestions
    assert thread["visibility"] == case.visibility
