"""SPEC §5.3/§5.4 over real SMTP, on SQLite and PostgreSQL: References / In-Reply-To /
Message-ID chains, late parents, no subject-only merging, and the same message (or a
parent and its reply) arriving on two connections at once."""

from __future__ import annotations

import smtplib
import threading

import pytest

from tests.support.linking_world import Tenant, message_count
from tests.support.server import BccdServer

pytestmark = [pytest.mark.spec("5.3"), pytest.mark.spec("5.4")]


def test_reply_joins_its_parents_thread(srv: BccdServer) -> None:
    t = Tenant(srv, "reply")
    t.send(t.mail(message_id="<p@x.test>", subject="Offer"))
    t.send(t.mail(message_id="<r@x.test>", subject="Re: Offer", in_reply_to="<p@x.test>"))
    t.send(t.mail(message_id="<r2@x.test>", subject="Re: Offer",
                  references="<p@x.test> <r@x.test>"))
    thread = t.thread()
    assert thread["messages"] == 3 and thread["subject"] == "Offer"


def test_reply_arriving_before_its_parent_is_reattached_when_the_parent_arrives(
        srv: BccdServer) -> None:
    t = Tenant(srv, "late-parent")
    t.send(t.mail(message_id="<r@y.test>", subject="Re: Offer", in_reply_to="<p@y.test>",
                  references="<p@y.test>"))
    first = t.thread()
    t.send(t.mail(message_id="<p@y.test>", subject="Offer"))
    thread = t.thread()
    assert thread["thread_id"] == first["thread_id"]
    assert thread["messages"] == 2
    assert thread["subject"] == "Offer"  # the root names the thread once it arrives


def test_a_late_parent_joins_two_reply_chains_into_one_thread_keeping_the_item_link(
        srv: BccdServer) -> None:
    t = Tenant(srv, "merge")
    t.person("Bob", "bob@client.test")
    t.item("deal", "Deal", "Bob")
    t.send(t.mail(message_id="<r1@z.test>", subject="Re: A", references="<p@z.test>"))
    t.send(t.mail(message_id="<r2@z.test>", subject="Re: B", references="<q@z.test>",
                  to="nobody@elsewhere.test"))
    assert len(t.threads()) == 2
    t.send(t.mail(message_id="<p@z.test>", subject="A", references="<q@z.test>"))
    thread = t.thread()
    assert thread["messages"] == 3
    assert ("deal", "Deal", "auto") in t.named(thread["links"])
    assert [lk["kind"] for lk in thread["links"]].count("deal") == 1


def test_same_subject_without_references_is_never_merged(srv: BccdServer) -> None:
    t = Tenant(srv, "subject")
    t.send(t.mail(subject="Hello", to="bob@client.test"))
    t.send(t.mail(subject="Hello", to="carol@other.test"))
    t.send(t.mail(subject="Hello", to="bob@client.test"))
    assert [th["messages"] for th in t.threads()] == [1, 1, 1]


def _deliver_at_once(t: Tenant, raws: list[bytes]) -> list[int]:
    """Open one SMTP session per message, then send every DATA at the same moment."""
    barrier = threading.Barrier(len(raws))
    codes: list[int] = [0] * len(raws)
    sessions = []
    for _ in raws:
        s = smtplib.SMTP("127.0.0.1", t.srv.smtp_port, timeout=60)
        s.ehlo("client.test")
        assert s.mail(t.alice["email"])[0] == 250
        assert s.rcpt(t.alice["bcc_address"])[0] == 250
        sessions.append(s)

    def go(i: int) -> None:
        barrier.wait()
        codes[i] = sessions[i].data(raws[i])[0]

    workers = [threading.Thread(target=go, args=(i,)) for i in range(len(raws))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    for s in sessions:
        s.quit()
    return codes


def test_same_message_on_two_connections_at_once_is_one_message_in_one_thread(
        srv: BccdServer) -> None:
    t = Tenant(srv, "race")
    t.person("Bob", "bob@client.test")
    for i in range(4):
        raw = t.mail(message_id=f"<race-{i}@acme.test>", subject=f"Race {i}",
                     to=f"Bob <bob@client.test>, New <new{i}@fresh.test>")
        assert _deliver_at_once(t, [raw, raw]) == [250, 250]
    threads = t.threads()
    assert sorted(th["messages"] for th in threads) == [1, 1, 1, 1]
    assert message_count(srv, t.alice["email"]) == 4
    persons = t.persons()  # the unknown counterparts were created once each
    assert len({p["id"] for p in persons.values()}) == 5


def test_parent_and_reply_at_once_end_in_one_thread(srv: BccdServer) -> None:
    t = Tenant(srv, "race-reply")
    for i in range(3):
        parent = t.mail(message_id=f"<p{i}@acme.test>", subject=f"Topic {i}")
        reply = t.mail(message_id=f"<r{i}@acme.test>", subject=f"Re: Topic {i}",
                       in_reply_to=f"<p{i}@acme.test>", references=f"<p{i}@acme.test>")
        assert _deliver_at_once(t, [parent, reply]) == [250, 250]
    assert sorted(th["messages"] for th in t.threads()) == [2, 2, 2]
