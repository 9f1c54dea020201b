"""SPEC §2: per-deal/lead/project Smart Bcc addresses. A valid address pins the copy to
its item (``how = address``), also when it was signed under a key listed in
``security.old_secret_keys``; a forged or stale signature, another kind, another
company's slug or an unknown id is ``550 5.1.1`` at RCPT."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from bccd.addresses import entity_bcc_address
from tests.support.linking_world import Tenant
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("2")

NEW_KEY = "new-key-0123456789abcdefghijklmnopqrstuv"
OLD_KEY = "old-key-0123456789abcdefghijklmnopqrstuv"
GONE_KEY = "gone-key-0123456789abcdefghijklmnopqrstu"


def rcpt(srv: BccdServer, address: str, mail_from: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(mail_from)
        return s.rcpt(address)


def test_entity_addresses_pin_when_genuine_and_are_unknown_when_forged_or_stale(
        make_server: Callable[..., BccdServer]) -> None:
    srv = make_server({"security": {"secret_key": NEW_KEY, "old_secret_keys": [OLD_KEY]}})
    t = Tenant(srv, "entity")
    other = Tenant(srv, "entity-other")
    t.person("Bob", "bob@client.test")
    deal = t.item("deal", "Deal", "Bob")
    t.item("deal", "Second", "Bob")
    dom, slug, did = srv.bcc_domain, t.slug, deal["id"]
    assert deal["bcc_address"] == entity_bcc_address(NEW_KEY, slug, "deal", did, dom)

    genuine_old = entity_bcc_address(OLD_KEY, slug, "deal", did, dom)
    local = deal["bcc_address"].split("@")[0]
    refused = {
        "forged": f"{local[:-4]}aaaa@{dom}",
        "stale key": entity_bcc_address(GONE_KEY, slug, "deal", did, dom),
        "other kind": entity_bcc_address(NEW_KEY, slug, "lead", did, dom),
        "other company": entity_bcc_address(NEW_KEY, other.slug, "deal", did, dom),
        "unknown id": entity_bcc_address(NEW_KEY, slug, "deal", 999999, dom),
        "no signature": f"{slug}+deal-{did}@{dom}",
    }
    for why, address in refused.items():
        code, text = rcpt(srv, address, t.alice["email"])
        assert (code, text.split()[0]) == (550, b"5.1.1"), why

    assert t.send(t.mail(to="bob@client.test", subject="old key"), to=[genuine_old])[0] == 250
    assert t.send(t.mail(to="bob@client.test", subject="new key"),
                  to=[deal["bcc_address"]])[0] == 250
    for thread in t.threads():
        assert ("deal", "Deal", "address") in t.named(thread["links"])
        assert thread["suggestions"] == []

    # the sender must still be a user of that company
    raw = other.mail(to="bob@client.test")
    code, text = other.send(raw, to=[deal["bcc_address"]])
    assert (code, text.split()[0]) == (550, b"5.7.1")
    assert other.threads() == []
