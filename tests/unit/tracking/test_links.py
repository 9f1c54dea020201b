"""What tracking does to a message (SPEC §13): the recipients' HTML gets its http(s) links
rewritten to signed ``/t/c/`` addresses, a hidden decoy link and the pixel; the user's
own copy and the plain-text alternative stay exactly as written."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from bccd.compose.mime import Draft, build
from bccd.compose.recipients import one, parse
from bccd.tracking import links, tokens
from bccd.tracking.links import Plan, Rewriter

pytestmark = pytest.mark.spec("13")

KEY = tokens.derive("s3cret")
BASE = "https://crm.example.com"
NOW = 1_800_000_000
ALICE = one("Alice <alice@acme.test>", "from")
HTML = ('<p>Hello <a href="https://example.com/offer?a=1&amp;b=2">the offer</a>, '
        '<a href="http://example.org/">site</a>, '
        '<a href="https://example.com/offer?a=1&amp;b=2">the offer again</a>, '
        '<a href="mailto:sales@acme.test">write</a> <a href="tel:+4930123">call</a></p>')


def _plan(opens: bool = True, clicks: bool = True) -> Plan:
    return Plan(tracking_id=987654321, opens=opens, clicks=clicks, issued=NOW, base_url=BASE,
                key=KEY)


def _parts(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    html = msg.get_body(("html",))  # type: ignore[attr-defined]
    text = msg.get_body(("plain",))  # type: ignore[attr-defined]
    return html.get_content(), text.get_content()


def _build(plan: Plan, html: str = HTML, **kw: object):  # type: ignore[no-untyped-def]
    draft = Draft(sender=ALICE, to=tuple(parse(["Dana <dana@client.test>"], "to")),
                  bcc=tuple(parse(["boss@acme.test"], "bcc")), subject="Offer", html=html,
                  **kw)  # type: ignore[arg-type]
    return build(draft, max_size=10**6, tracking=Rewriter(plan))


def _claims(html: str, kind: str) -> list[tokens.Claim]:
    out = []
    for token in re.findall(rf"{re.escape(BASE)}/t/{kind}/([A-Za-z0-9_-]+)", html):
        claim = tokens.verify([KEY], kind, token, now=NOW + 5, ttl=3600)
        assert claim is not None
        out.append(claim)
    return out


def test_links_become_signed_addresses_the_decoy_comes_first_and_the_pixel_last() -> None:
    built = _build(_plan())
    html, text = _parts(built.sent)
    assert built.tracked and built.links == ("https://example.com/offer?a=1&b=2",
                                             "http://example.org/")
    # every http(s) link goes through /t/c/, the same URL twice is the same index
    assert "example.com/offer" not in html and "example.org" not in html
    clicks = _claims(html, "c")
    assert [c.link for c in clicks] == [tokens.DECOY, 0, 1, 0]
    assert {c.tracking_id for c in clicks} == {987654321}
    assert 'href="mailto:sales@acme.test"' in html and 'href="tel:+4930123"' in html
    # the decoy: first, empty, invisible, out of reach of the keyboard and screen readers
    decoy = re.search(r"<a [^>]*>\s*</a>", html)
    assert decoy is not None and html.index(decoy.group(0)) < html.index("Hello")
    assert 'style="display:none' in decoy.group(0)
    assert 'aria-hidden="true"' in decoy.group(0) and 'tabindex="-1"' in decoy.group(0)
    # the pixel: last, 1×1, empty alt
    assert [c.link for c in _claims(html, "o")] == [0]
    pixel = re.search(r'<img src="[^"]*/t/o/[^"]*"[^>]*>', html)
    assert pixel is not None and html.rstrip().endswith(pixel.group(0))
    assert 'width="1" height="1" alt=""' in pixel.group(0)
    # the plain-text alternative: no pixel, the links as written
    assert "/t/" not in text and "https://example.com/offer?a=1&b=2" in text


def test_the_users_own_copy_is_untouched_and_keeps_its_bcc() -> None:
    built = _build(_plan())
    copy_html, copy_text = _parts(built.copy)
    _, sent_text = _parts(built.sent)
    assert "/t/" not in built.copy.decode()
    assert 'href="https://example.com/offer?a=1&amp;b=2"' in copy_html
    assert copy_text == sent_text
    assert b"\r\nBcc: boss@acme.test\r\n" in built.copy and b"Bcc:" not in built.sent
    untracked = build(Draft(sender=ALICE, to=tuple(parse(["Dana <dana@client.test>"], "to")),
                            subject="Offer", html=HTML), max_size=10**6)
    assert _parts(untracked.sent)[0] == copy_html


def test_only_opens_or_only_clicks() -> None:
    opens_only, _ = _parts(_build(_plan(clicks=False)).sent)
    assert _claims(opens_only, "c") == [] and len(_claims(opens_only, "o")) == 1
    assert 'href="https://example.com/offer?a=1&amp;b=2"' in opens_only
    clicks_only, _ = _parts(_build(_plan(opens=False)).sent)
    assert _claims(clicks_only, "o") == [] and len(_claims(clicks_only, "c")) == 4


def test_no_link_no_decoy_and_inline_images_are_the_same_parts() -> None:
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    built = _build(_plan(), html=f'<p>no links <img src="{png}" alt="logo"></p>')
    html, _ = _parts(built.sent)
    assert _claims(html, "c") == [] and built.links == ()
    cid = re.search(r'src="cid:([^"]+)"', html)
    assert cid is not None and f"cid:{cid.group(1)}" in _parts(built.copy)[0]


def test_links_past_the_limits_are_left_as_written() -> None:
    many = "".join(f'<a href="https://example.com/{i}">{i}</a>' for i in range(links.MAX_LINKS + 3))
    long_url = "https://example.com/" + "x" * links.MAX_URL
    built = _build(_plan(), html=many + f'<a href="{long_url}">long</a>')
    assert len(built.links) == links.MAX_LINKS
    html, _ = _parts(built.sent)
    assert f'href="https://example.com/{links.MAX_LINKS + 1}"' in html and long_url in html


def test_a_link_to_bccds_own_tracking_address_is_not_wrapped_again() -> None:
    r = Rewriter(_plan())
    own = f"{BASE}/t/c/" + "A" * 42
    assert r.href(own) == own and r.links == []
