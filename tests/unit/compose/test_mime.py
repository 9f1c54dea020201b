"""The message a user wrote, as MIME (SPEC §12): structure, inline images as cid parts
(each image once), the sanitizer allowlist, the text alternative, reply and forward
headers, the Bcc kept only in the user's copy, the size limit, SMTPUTF8."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy

import pytest

from bccd.compose.mime import Draft, Original, Part, build, references_for, without_bcc
from bccd.compose.recipients import one, parse
from bccd.errors import Invalid

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x01" * 32
ALICE = one("Alice <alice@acme.test>", "from")


def _draft(**kw: object) -> Draft:
    base: dict[str, object] = {"sender": ALICE, "to": tuple(parse(["Dana <dana@client.test>"], "to")),
                               "subject": "Hello"}
    base.update(kw)
    return Draft(**base)  # type: ignore[arg-type]


def _msg(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _uri(data: bytes, ctype: str = "image/png") -> str:
    return f"data:{ctype};base64,{base64.b64encode(data).decode()}"


def test_each_data_image_becomes_one_related_part_referenced_by_cid() -> None:
    html = (f'<p><img src="{_uri(PNG)}"> and again <img src="{_uri(PNG)}"> and '
            f'<img src="{_uri(GIF, "image/gif")}"> <img src="{_uri(b"<svg/>", "image/svg+xml")}">'
            '<img src="https://cdn.example.com/logo.png"> <img src="javascript:alert(1)"></p>')
    built = build(_draft(html=html), max_size=10**6)
    msg = _msg(built.sent)
    images = [p for p in msg.walk() if p.get_content_maintype() == "image"]
    assert [p.get_content() for p in images] == [PNG, GIF]
    cids = [p["Content-ID"].strip("<>") for p in images]
    body = msg.get_body(("html",)).get_content()
    assert body.count(f"cid:{cids[0]}") == 2 and body.count(f"cid:{cids[1]}") == 1
    assert "svg" not in body and "javascript" not in body
    assert 'src="https://cdn.example.com/logo.png"' in body
    assert all(c.endswith("@acme.test") for c in cids)
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1 and related[0].get_payload()[0].get_content_type() == "text/html"


def test_a_plain_text_message_has_one_text_part_and_no_html() -> None:
    built = build(_draft(text="Hi Dana,\r\nsee you.\n"), max_size=10**6)
    msg = _msg(built.sent)
    assert msg.get_content_type() == "text/plain" and built.html is None
    assert msg.get_content().replace("\r\n", "\n") == "Hi Dana,\nsee you.\n"


def test_headers_message_id_date_and_the_bcc_only_in_the_users_copy() -> None:
    when = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    built = build(_draft(html="<p>x</p>", bcc=tuple(parse(["Boss <boss@acme.test>"], "bcc"))),
                  max_size=10**6, message_id="abc@acme.test", now=when)
    sent, copy = _msg(built.sent), _msg(built.copy)
    assert sent["Message-ID"] == "<abc@acme.test>" and built.message_id == "abc@acme.test"
    assert sent["Date"] == "Mon, 07 Dec 2026 10:00:00 +0000"
    assert sent["Bcc"] is None and copy["Bcc"] == "Boss <boss@acme.test>"
    assert without_bcc(built.copy) == built.sent
    assert b"MIME-Version" in built.sent and built.sent.count(b"MIME-Version") == 1
    assert b"\r\n" in built.sent and b"\n" not in built.sent.replace(b"\r\n", b"")


def test_reply_headers_subject_and_a_references_chain_kept_short() -> None:
    refs = tuple(f"r{i}@x.test" for i in range(30))
    orig = Original("orig@x.test", refs, "Dana <dana@client.test>", None, "Re: Quote", "", "",
                    None, "The question\nsecond line")
    built = build(_draft(subject=None, text="Answer", reply_to=orig), max_size=10**6)
    msg = _msg(built.sent)
    assert msg["Subject"] == "Re: Quote" and msg["In-Reply-To"] == "<orig@x.test>"
    chain = msg["References"].split()
    assert len(chain) == 20 and chain[0] == "<r0@x.test>" and chain[-1] == "<orig@x.test>"
    assert references_for(orig)[-2] == "r29@x.test"
    text = msg.get_content().replace("\r\n", "\n")
    assert "Dana <dana@client.test> wrote:\n> The question\n> second line\n" in text


def test_forward_subject_header_block_and_the_originals_attachments() -> None:
    orig = Original("orig@x.test", (), "Dana <dana@client.test>", None, "Spec", "alice@acme.test",
                    "", "<p>The <b>spec</b></p>", "", (Part("spec.pdf", "application/pdf", b"%PDF"),))
    built = build(_draft(subject=None, html="<p>FYI</p>", forward_of=orig), max_size=10**6)
    msg = _msg(built.sent)
    assert msg["Subject"] == "Fwd: Spec" and msg["References"] == "<orig@x.test>"
    html = msg.get_body(("html",)).get_content()
    assert "---------- Forwarded message ---------" in html and "<b>spec</b>" in html
    assert [a.get_filename() for a in msg.iter_attachments()] == ["spec.pdf"]
    again = build(_draft(subject=None, text="x", forward_of=Original(
        None, (), "d@x.test", None, "Fwd: Spec", "", "", None, "t")), max_size=10**6)
    assert _msg(again.sent)["Subject"] == "Fwd: Spec"


def test_the_signature_comes_after_the_text_and_before_the_quote() -> None:
    orig = Original("o@x.test", (), "Dana <dana@client.test>", None, "Q", "", "", "<p>Quoted</p>", "")
    built = build(_draft(html="<p>Body</p>", signature_html="<p>Alice Smith</p>", reply_to=orig),
                  max_size=10**6)
    html = _msg(built.sent).get_body(("html",)).get_content()
    assert html.index("Body") < html.index("Alice Smith") < html.index("Quoted")
    text = _msg(built.sent).get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Body\n\n-- \nAlice Smith\n" in text and "> Quoted" in text


def test_a_message_over_the_limit_is_refused_naming_the_attachments() -> None:
    with pytest.raises(Invalid, match=r"^attachments: the message would be"):
        build(_draft(text="x", attachments=(Part("big.bin", "application/octet-stream",
                                                 b"x" * 200_000),)), max_size=100_000)


def test_an_internationalized_address_needs_smtputf8() -> None:
    built = build(_draft(to=tuple(parse(["Jörg <jörg@bücher.example>"], "to")), text="x"),
                  max_size=10**6)
    assert built.smtputf8
    assert "jörg@xn--bcher-kva.example".encode() in built.sent
    assert not build(_draft(text="x"), max_size=10**6).smtputf8


def test_unknown_content_types_and_path_names_are_made_harmless() -> None:
    built = build(_draft(text="x", attachments=(Part("../../etc/passwd", "not a type", b"x"),)),
                  max_size=10**6)
    [att] = list(_msg(built.sent).iter_attachments())
    assert att.get_filename() == "passwd" and att.get_content_type() == "application/octet-stream"
