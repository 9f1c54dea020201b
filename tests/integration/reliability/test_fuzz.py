"""A property-based fuzzer over parse → auth → link (the real ``Pipeline`` in-process, on a
temporary SQLite database, with the real DMARC ``Authenticator`` asking the loopback DNS
server): whatever the bytes, nothing raises, and the outcome is stored, a duplicate or a
deliberate refusal — never a 4xx or an unexpected 5xx for a fault of our own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bccd import accounts
from bccd.auth.authenticator import build_authenticator
from bccd.config import Settings
from bccd.ingest import recipients
from bccd.ingest.outcome import Disposition
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, Target
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.spec("5.1")

DOMAIN = "fuzz.test"
DELIBERATE = {(550, "5.7.1"), (550, "5.7.26"), (552, "5.3.4"), (554, "5.6.0")}


@dataclass
class Rig:
    pipeline: Pipeline
    target: Target


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, dns: DnsTestServer) -> Iterator[Rig]:
    dns.add_txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    dns.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
    d: Path = tmp_path_factory.mktemp("fuzz")
    settings = Settings.model_validate({
        "database": {"url": f"sqlite:///{d / 'fuzz.sqlite3'}"},
        "storage": {"data_dir": str(d)},
        "security": {"secret_key": "fuzz-key"},
        "smtp": {"hostname": "bccd.test"},
        "auth": {"mode": "dmarc"},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0},
    })
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    with db.transaction() as s:
        company = accounts.create_company(s, "Fuzz", "fuzz")
        user = accounts.create_user(s, f"alice@{DOMAIN}", company).user
        address = accounts.bcc_address(user, settings.smtp.bcc_domain)
    with db.read() as s:
        target = recipients.resolve(s, settings, address)
    assert isinstance(target, Target)
    pipeline = Pipeline(settings, db, BlobStore(settings.blob_dir), authenticator=build_authenticator(settings))
    yield Rig(pipeline, target)
    db.dispose()


# -- what a message is made of ---------------------------------------------------------------
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
raw_bytes = st.binary(max_size=60)
local = st.sampled_from(["alice", "bob", "ALICE", "a+b", "\"quoted local\"", "", "x" * 70])
domain = st.sampled_from([DOMAIN, "FUZZ.test", "client.example", "xn--mnchen-3ya.test", "münchen.test",
                          "[127.0.0.1]", "evil.test", ""])
address = st.builds(lambda lp, dom: f"{lp}@{dom}", local, domain)
encoded_word = st.builds(lambda cs, enc, t: f"=?{cs}?{enc}?{t}?=", st.sampled_from(["utf-8", "iso-8859-1", "bogus"]),
                         st.sampled_from(["q", "b", "x"]), st.text("abcAZ=_+/09!", max_size=20))
from_value = st.one_of(
    st.just(f"Alice <alice@{DOMAIN}>"), st.just(f"alice@{DOMAIN}"),
    st.builds(lambda n: f'"{n}" <alice@{DOMAIN}>', text),
    st.builds(lambda a: f"Alice <{a}>", address),
    st.builds(lambda a, b: f"{a}, {b}", address, address),
    st.builds(lambda a: f"group: {a};", address),
    st.builds(lambda w: f"{w} <alice@{DOMAIN}>", encoded_word),
    text,
)
header_value = st.one_of(text, encoded_word, address,
                         st.lists(address, max_size=5).map(", ".join),
                         raw_bytes.map(lambda b: b.decode("latin-1")))
header_name = st.sampled_from(["To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                               "Reply-To", "Sender", "Content-Type", "Content-Transfer-Encoding",
                               "MIME-Version", "DKIM-Signature", "Authentication-Results", "X-Anything"])
content_type = st.sampled_from(["text/plain", "text/plain; charset=bogus", "text/html; charset=utf-8",
                                'multipart/mixed; boundary="b1"', 'multipart/alternative; boundary="b1"',
                                "message/rfc822", "application/pdf; name=\"a.pdf\"", "multipart/mixed",
                                "image/png; name==?utf-8?q?x?="])
cte = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"])
body = st.one_of(raw_bytes, text.map(str.encode),
                 st.builds(lambda a, b: f"--b1\r\nContent-Type: text/plain\r\n\r\n{a}\r\n--b1\r\n"
                                        f"Content-Type: message/rfc822\r\n\r\nFrom: {b}\r\n\r\nx\r\n--b1--\r\n"
                                        .encode(), text, from_value))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:  # now and then: anything at all
        return draw(st.binary(max_size=400))
    if draw(st.integers(0, 9)) < 7:  # mostly the user's own From: those reach auth and linking
        headers = [f"From: {draw(st.sampled_from([f'Alice <alice@{DOMAIN}>', f'alice@{DOMAIN}']))}"]
    else:
        headers = [f"From: {v}" for v in draw(st.lists(from_value, min_size=0, max_size=2))]
    headers += [f"{n}: {v}" for n, v in draw(st.lists(st.tuples(header_name, header_value), max_size=8))]
    headers.append(f"Content-Type: {draw(content_type)}")
    headers.append(f"Content-Transfer-Encoding: {draw(cte)}")
    if draw(st.booleans()):
        headers.append(f"Message-ID: <{draw(st.text('abcdef0123456789', min_size=1, max_size=12))}@fuzz>")
    order = draw(st.permutations(headers))
    head = "\r\n".join(h.replace("\r", " ").replace("\n", " ") for h in order)
    return head.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + draw(body) + b"\r\n"


def test_pipeline_never_crashes_nor_tempfails_on_any_input(rig: Rig, figures) -> None:
    env = Envelope(mail_from=f"alice@{DOMAIN}", client_ip="127.0.0.1", helo="client.test")
    seen: dict[str, int] = {}

    @hsettings(max_examples=300, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(raw=messages())
    def ingest_anything(raw: bytes) -> None:
        outcomes = asyncio.run(rig.pipeline.ingest(raw, targets=[rig.target], envelope=env))
        assert len(outcomes) == 1
        o = outcomes[0]
        seen[o.disposition.value] = seen.get(o.disposition.value, 0) + 1
        assert o.disposition is not Disposition.TEMPFAIL, (o, raw[:500])
        if o.disposition is Disposition.REFUSED:
            assert (o.reply.code, o.reply.enhanced) in DELIBERATE, (o, raw[:500])

    ingest_anything()
    assert seen.get("stored", 0) > 0, seen  # the fuzzer did reach the link stage
    figures("fuzzer over parse → auth → link", examples=sum(seen.values()), **seen, tempfail=0,
            crashes=0)
