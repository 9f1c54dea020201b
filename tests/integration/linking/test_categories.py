"""SPEC §5.10 over real SMTP, on SQLite and PostgreSQL: each real-shaped message (the table
of ``tests.support.automated``) reaches Alice's Smart Bcc address the way incoming mail
does — she forwards it as an attachment (§4.3) — or as her own mail; then its category,
what became of the counterpart and the thread's link state. And the company's settings
(``unlinked``/``store``/``drop``, internal mail, domains) with the filters of every front."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support.automated import SHAPES
from tests.support.linking_world import Tenant, message_count, sql
from tests.support.server import BccdServer, CliError

pytestmark = pytest.mark.spec("5.10")

AUTOMATED = ("auto_reply", "bulk", "bounce")


def bob(t: Tenant) -> str:
    return f"bob@client-{t.slug}.test"


def first_mail(t: Tenant) -> str:
    """Alice writes to Bob first: Bob becomes a person, the thread is a conversation."""
    mid = f"<q42-{uuid.uuid4().hex[:8]}@{t.domain}>"
    raw = t.mail(to=f"Bob <{bob(t)}>", subject="Quote #42", message_id=mid)
    assert t.send(raw)[0] == 250
    return mid


def messages_of(t: Tenant) -> list[dict[str, Any]]:
    return [m for th in t.threads() for m in t.show(th["thread_id"])["messages"]]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_shape_through_smart_bcc(srv: BccdServer, name: str) -> None:
    shape = SHAPES[name]
    t = Tenant(srv, name[:12])
    parent = first_mail(t) if shape.reply else None
    sender = f"carol@{t.domain}" if shape.colleague else bob(t)
    if shape.colleague:
        t.user("carol")
    raw = shape.build(sender, t.alice["email"], **({"in_reply_to": parent} if parent else {}))
    assert t.forward("alice", raw)[0] == 250

    threads = t.threads()
    assert len(threads) == 1, threads          # a reply or a bounce joins Alice's thread
    thread = threads[0]
    shown = t.show(thread["thread_id"])
    filed = [m for m in shown["messages"] if m["from"] == sender.lower()
             or m["from"].startswith("mailer-daemon")]
    assert len(filed) == 1
    assert filed[0]["category"] == shape.category
    assert shape.reason in filed[0]["category_reason"]
    persons = t.persons()
    if shape.reply:   # Alice's conversation stays what it was: a person's, linked to Bob
        assert thread["category"] == "person" and thread["link_state"] == "no_open_item"
        assert {lk["kind"] for lk in thread["links"]} == {"person"}
    elif shape.category in AUTOMATED:
        # stored "unlinked": no person made, nothing linked, never "needs linking"
        assert bob(t) not in persons
        assert thread["links"] == [] and thread["link_state"] == "automated"
        assert thread["category"] == shape.category
    elif shape.category == "internal":
        assert f"carol@{t.domain}" not in persons
        assert thread["link_state"] == "no_person" and thread["category"] == "internal"
    else:
        assert persons[bob(t)]["name"] == "Bob Client"
        assert thread["link_state"] == "no_open_item" and thread["category"] == "person"


def test_automated_mail_from_a_person_with_one_open_deal_is_not_linked_to_it(
        srv: BccdServer) -> None:
    t = Tenant(srv, "ooo-deal")
    t.person("Bob", bob(t))
    t.item("deal", "Big deal", "Bob")
    assert t.forward("alice", SHAPES["gmail_vacation"].build(bob(t), t.alice["email"]))[0] == 250
    [thread] = t.threads()
    assert (thread["links"], thread["suggestions"], thread["link_state"]) == ([], [], "automated")
    # Alice answers in that thread: now it is a conversation, and the deal rule applies
    ooo = messages_of(t)[0]["message_id"]
    raw = t.mail(to=f"Bob <{bob(t)}>", subject="Re: Quote", in_reply_to=f"<{ooo}>",
                 references=f"<{ooo}>")
    assert t.send(raw)[0] == 250
    [thread] = t.threads()
    assert thread["category"] == "person" and thread["link_state"] == "linked"
    assert t.named(thread["links"]) == {("person", "Bob", "auto"), ("deal", "Big deal", "auto")}
    assert t.threads("alice", "--needs-linking") == []


def test_a_person_created_later_does_not_link_automated_threads(srv: BccdServer) -> None:
    t = Tenant(srv, "retro-auto")
    assert t.forward("alice", SHAPES["newsletter"].build(bob(t), t.alice["email"]))[0] == 250
    t.person("Bob", bob(t))          # retroactive linking (§5.7) leaves it alone
    t.item("deal", "Deal", "Bob")
    [thread] = t.threads()
    assert (thread["links"], thread["link_state"]) == ([], "automated")


def test_store_files_automated_mail_like_any_mail(srv: BccdServer) -> None:
    t = Tenant(srv, "store")
    srv.cli("company", "set", t.slug, "--automated-mail", "store")
    assert t.forward("alice", SHAPES["newsletter"].build(bob(t), t.alice["email"]))[0] == 250
    [thread] = t.threads()
    assert thread["category"] == "bulk" and thread["link_state"] == "no_open_item"
    assert bob(t) in t.persons()


def test_drop_accepts_counts_and_stores_nothing(srv: BccdServer) -> None:
    t = Tenant(srv, "drop")
    out = srv.cli("company", "set", t.slug, "--automated-mail", "drop", "--internal-mail", "drop")
    assert (out["automated_mail"], out["internal_mail"]) == ("drop", "drop")
    t.user("carol")
    before = _dropped_metric(srv)
    assert t.forward("alice", SHAPES["exchange_out_of_office"].build(bob(t), t.alice["email"]))[0] == 250
    assert t.forward("alice", SHAPES["colleague_note"].build(f"carol@{t.domain}",
                                                             t.alice["email"]))[0] == 250
    assert t.send(t.mail(to=f"Carol <carol@{t.domain}>", subject="internal"))[0] == 250
    assert message_count(srv, t.alice["email"]) == 0 and bob(t) not in t.persons()
    rejected = srv.cli("rejections", "list", t.alice["email"])
    reasons = sorted(r["reason"] for r in rejected)
    assert len(reasons) == 3 and all(r["code"].startswith("250") for r in rejected)
    assert reasons[0].startswith("auto_reply mail dropped (Auto-Submitted: auto-generated")
    assert "automated_mail = drop" in reasons[0]
    assert all("internal_mail = drop" in r for r in reasons[1:])
    after = _dropped_metric(srv)
    assert after.get("auto_reply", 0) - before.get("auto_reply", 0) == 1
    assert after.get("internal", 0) - before.get("internal", 0) == 2
    # person mail and bounces are never dropped
    assert t.send(t.mail(to=f"Bob <{bob(t)}>", subject="still filed"))[0] == 250
    assert message_count(srv, t.alice["email"]) == 1


def _dropped_metric(srv: BccdServer) -> dict[str, float]:
    text = httpx.get(f"{srv.http_url}/metrics", timeout=30).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^bccd_messages_dropped_by_category_total\{category="([a-z_]+)",source="bcc"\} (\S+)',
        text, re.M)}


def test_internal_mail_and_the_company_domains(srv: BccdServer) -> None:
    t = Tenant(srv, "domains")
    shown = srv.cli("company", "set", t.slug, "--create-unknown-contacts", "on")
    assert shown["domains"] == [t.domain] and shown["domains_default"]
    # a colleague at a domain the company names (not a user): internal, never a person
    shown = srv.cli("company", "set", t.slug, "--domains", f"{t.domain}, EU.{t.slug}.test")
    assert shown["domains"] == [t.domain, f"eu.{t.slug}.test"] and not shown["domains_default"]
    assert shown["automated_mail"] == "unlinked"          # untouched flags stay
    raw = t.mail(to=f"Dan <dan@eu.{t.slug}.test>", subject="eu note")
    assert t.send(raw)[0] == 250
    [thread] = t.threads()
    assert (thread["category"], thread["link_state"]) == ("internal", "no_person")
    assert f"dan@eu.{t.slug}.test" not in t.persons()
    shown = srv.cli("company", "set", t.slug, "--domains", "")
    assert shown["domains_default"] and shown["domains"] == [t.domain]
    with pytest.raises(CliError) as err:
        srv.cli("company", "set", t.slug, "--domains", "not a domain!")
    assert err.value.code == 1 and "domains" in err.value.stderr


def test_category_filters_in_the_cli_the_api_and_the_mail_page(srv: BccdServer) -> None:
    t = Tenant(srv, "filters")
    first_mail(t)
    assert t.forward("alice", SHAPES["newsletter"].build(f"news@{t.slug}-news.test",
                                                         t.alice["email"]))[0] == 250
    assert t.forward("alice", SHAPES["exchange_out_of_office"].build(
        f"ooo@{t.slug}-x.test", t.alice["email"]))[0] == 250
    subjects = {th["subject"]: th["category"] for th in t.threads()}
    assert subjects == {"Quote #42": "person", "Our November news": "bulk",
                        "Automatic reply: Quote #42": "auto_reply"}
    assert [th["subject"] for th in t.threads("alice", "--category", "bulk")] == ["Our November news"]
    assert {th["subject"] for th in t.threads("alice", "--category", "person,auto_reply")} == {
        "Quote #42", "Automatic reply: Quote #42"}
    with pytest.raises(CliError) as err:
        t.threads("alice", "--category", "spam")
    assert err.value.code == 1 and "unknown category 'spam'" in err.value.stderr
    with t.api() as api:
        r = api.get("/threads", params=[("category", "person"), ("category", "internal")])
        assert r.status_code == 200
        assert [th["subject"] for th in r.json()["threads"]] == ["Quote #42"]
        bad = api.get("/threads", params={"category": "spam"})
        assert bad.status_code == 422 and "category" in bad.text
    with t.page() as page:
        html = page.get("/mail", params={"hide_automated": "1"}).text
        assert "Quote #42" in html and "November news" not in html
        assert 'id="hide-automated" value="1" checked' in html
        everything = page.get("/mail").text
        assert 'data-category="bulk"' in everything and "bulk / list" in everything


def test_admin_api_reads_and_changes_the_company_settings(srv: BccdServer) -> None:
    t = Tenant(srv, "admin-api")
    t.user("root", admin=True)
    with t.api("root") as api:
        got = api.get("/admin/company").json()
        assert (got["automated_mail"], got["internal_mail"], got["domains_default"]) == (
            "unlinked", "store", True)
        r = api.patch("/admin/company", json={"automated_mail": "drop",
                                              "domains": [f"sub.{t.domain}"]})
        assert r.status_code == 200, r.text
        assert (r.json()["automated_mail"], r.json()["domains"]) == ("drop", [f"sub.{t.domain}"])
        assert r.json()["create_unknown_contacts"] is True
        r = api.patch("/admin/company", json={"domains": None})
        assert r.json()["domains_default"] and r.json()["automated_mail"] == "drop"
        bad = api.patch("/admin/company", json={"internal_mail": "unlinked"})
        assert bad.status_code == 422 and "internal_mail" in bad.text
        bad = api.patch("/admin/company", json={"domains": ["exa mple"]})
        assert bad.status_code == 422 and "domains" in bad.text
    with t.api() as api:   # not an admin
        assert api.get("/admin/company").status_code == 403


def test_company_settings_on_the_mail_page_for_admins(srv: BccdServer) -> None:
    t = Tenant(srv, "page-admin")
    t.user("root", admin=True)
    with t.page("alice") as page:
        assert 'id="company-settings"' not in page.get("/mail/settings").text
    with t.page("root") as page:
        html = page.get("/mail/settings").text
        assert 'id="company-settings"' in html
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf
        r = page.post("/mail/settings/company/save", data={
            "csrf": csrf.group(1), "create_unknown_contacts": "on", "domains": "",
            "automated_mail": "store", "internal_mail": "drop"})
        assert r.status_code == 303
    shown = {c["slug"]: c for c in srv.cli("company", "list")}[t.slug]
    assert (shown["automated_mail"], shown["internal_mail"]) == ("store", "drop")
    assert sql(srv, "SELECT domains FROM companies WHERE slug = :s", s=t.slug) == [(None,)]
