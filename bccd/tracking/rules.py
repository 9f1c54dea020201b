"""Telling people from machines (SPEC §13): the one place that decides whether a hit on
the pixel or on a link was the recipient — a person — or a machine.

``classify(facts)`` → ``Verdict(kind, code)``: the first rule of ``RULES`` (in order) that
applies to the hit says ``machine`` with its code; when none does, the hit is ``human``
(code ``person``). ``REASONS`` gives each code its sentence for people (the Mail page).
Pure: ``Facts`` are what ``bccd.tracking.hits`` knows of the request and of the message
at that moment. Nothing here is stored but the code: no IP address (bccd does not look
at it at all) and no user agent.

The rules, each a documented behaviour of the machines that fetch mail content:

- ``sender`` — the request carries the sender's own live bccd session: the sender looking
  at their own message (in a browser where they are signed in to bccd).
- ``decoy`` — the hidden link: every tracked message with links carries one link that no
  person can see or click (no text, ``display:none``, hidden from screen readers and the
  keyboard); only software that follows every ``href`` reaches it.
- ``head`` — a ``HEAD`` request: link checkers ask for the headers only; browsers and
  mail programs showing or following something use ``GET``.
- ``prefetch`` — ``Purpose``/``Sec-Purpose: prefetch``, ``X-Purpose: preview``,
  ``X-Moz: prefetch``: a browser loading something ahead in case it is wanted.
- ``gmail-proxy`` — Gmail's image proxy (``GoogleImageProxy``, ``via ggpht.com``): Gmail
  fetches a message's images through it and caches them; a fetch does not say a person
  looked, nor which one.
- ``yahoo-proxy`` — Yahoo Mail's proxy (``YahooMailProxy``), which fetches the content of
  mail sent to Yahoo users.
- ``apple-mpp`` — Apple Mail Privacy Protection: Apple's proxies load every remote image
  of a message in the background when the device receives it, whether or not anyone opens
  it, with a bare ``Mozilla/5.0`` or Apple Mail's own user agent (WebKit without a
  browser's ``Version``/``Safari`` tokens). Mail's direct loads (protection off) look the
  same, so no Apple Mail load counts as a person. Clicks from Apple devices open Safari,
  whose user agent is a browser's: they are not affected.
- ``microsoft-preview`` — Microsoft's link checks and previews: Office's link discovery
  (``Microsoft Office Existence/Protocol Discovery``), Bing and Skype link previews.
- ``scanner`` — a user agent that names a crawler, a security gateway (Proofpoint,
  Mimecast, Barracuda, …), a headless browser or an HTTP library.
- ``no-user-agent`` — no user agent, or none with a product/version: no browser or mail
  program sends that.
- ``too-soon`` — a click less than ``TOO_SOON`` (10 s) after the message went out:
  faster than a person receives, opens and clicks; security gateways check links as they
  deliver.
- ``burst`` — a click less than ``BURST`` (1 s) after a click on another link of the same
  message: software following all the links at once (the earlier click of the burst is
  made a machine's too, ``hits.record``).
- ``repeat`` — the same link again within ``BURST``: one visit requested twice (a
  gateway checking the link while the person's browser follows it), not a second visit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bccd.tracking.tokens import DECOY

TOO_SOON = 10.0     # seconds after sending: a click earlier than this is a scanner's
BURST = 1.0         # seconds between clicks on a message's links: no person is that fast
HUMAN = "human"
MACHINE = "machine"
PERSON = "person"   # the code of a human hit

OPEN, CLICK = "open", "click"


@dataclass(frozen=True, slots=True)
class Facts:
    what: str                          # "open" | "click"
    method: str = "GET"
    user_agent: str = ""
    purpose: str = ""                  # the Purpose / Sec-Purpose / X-Purpose / X-Moz values
    sender_session: bool = False       # carries the sender's live bccd session
    link: int | None = None            # click: the link's index, or DECOY
    since_sent: float | None = None    # seconds since the message went out
    since_other_click: float | None = None  # since a click on another link of the message
    since_same_click: float | None = None   # since a click on this link


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str       # HUMAN | MACHINE
    code: str


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    applies_to: frozenset[str]
    reason: str
    test: Callable[[Facts], bool]


_BOTH = frozenset({OPEN, CLICK})
_CLICKS = frozenset({CLICK})

_GMAIL = re.compile(r"GoogleImageProxy|ggpht\.com", re.IGNORECASE)
_YAHOO = re.compile(r"YahooMailProxy", re.IGNORECASE)
_APPLE_MAIL = re.compile(
    r"^Mozilla/5\.0 \((?:Macintosh|iPhone|iPad|iPod)[^)]*\) AppleWebKit/[\d.]+ "
    r"\(KHTML, like Gecko\)(?: Mobile/\w+)?$")
_MICROSOFT = re.compile(r"Microsoft Office (?:Existence|Protocol) Discovery|BingPreview|"
                        r"SkypeUriPreview|Microsoft Outlook Link Preview", re.IGNORECASE)
_SCANNER = re.compile(
    r"bot\b|crawl|spider|scanner|preview|headless|phantomjs|python|curl/|wget/|"
    r"go-http-client|java/|okhttp|libwww|apache-httpclient|axios|node-fetch|aiohttp|"
    r"proofpoint|mimecast|barracuda|symantec|messagelabs|forcepoint|trend ?micro|sophos|"
    r"ironport|fireeye|zscaler|safelinks|urldefense|facebookexternalhit|whatsapp|"
    r"linkexpanding", re.IGNORECASE)
_PRODUCT = re.compile(r"[A-Za-z][\w.-]*/\d")


def _apple(f: Facts) -> bool:
    ua = f.user_agent.strip()
    return ua == "Mozilla/5.0" or bool(_APPLE_MAIL.match(ua))


def _prefetch(f: Facts) -> bool:
    p = f.purpose.lower()
    return "prefetch" in p or "preview" in p or "prerender" in p


RULES: tuple[Rule, ...] = (
    Rule("sender", _BOTH, "the sender's own view: the request carried the sender's bccd "
         "session", lambda f: f.sender_session),
    Rule("decoy", _CLICKS, "the hidden link, which no person can see or click: software "
         "following every link", lambda f: f.link == DECOY),
    Rule("head", _BOTH, "a HEAD request: link checkers ask for headers only, browsers and "
         "mail programs use GET", lambda f: f.method.upper() == "HEAD"),
    Rule("prefetch", _BOTH, "a browser prefetch or preview, not a visit", _prefetch),
    Rule("gmail-proxy", _BOTH, "Gmail's image proxy: it fetches images for Gmail, also before "
         "anyone reads the message", lambda f: bool(_GMAIL.search(f.user_agent))),
    Rule("yahoo-proxy", _BOTH, "Yahoo Mail's proxy, which fetches the content of mail sent to "
         "Yahoo users", lambda f: bool(_YAHOO.search(f.user_agent))),
    Rule("apple-mpp", _BOTH, "Apple Mail: with Mail Privacy Protection Apple loads images in "
         "the background whether or not anyone opens the message", _apple),
    Rule("microsoft-preview", _BOTH, "Microsoft's link check or preview (Office, Outlook.com, "
         "Skype)", lambda f: bool(_MICROSOFT.search(f.user_agent))),
    Rule("scanner", _BOTH, "a link scanner, crawler or program (its user agent says so)",
         lambda f: bool(_SCANNER.search(f.user_agent))),
    Rule("no-user-agent", _BOTH, "no user agent a browser or mail program sends",
         lambda f: not _PRODUCT.search(f.user_agent)),
    Rule("too-soon", _CLICKS, f"clicked less than {TOO_SOON:.0f} s after sending: security "
         "gateways check links as they deliver",
         lambda f: f.since_sent is None or f.since_sent < TOO_SOON),
    Rule("burst", _CLICKS, "another link of the message was clicked less than a second "
         "before: software following all the links",
         lambda f: f.since_other_click is not None and f.since_other_click < BURST),
    Rule("repeat", _CLICKS, "the same link again within a second: one visit requested twice "
         "(a scanner checking the link as the person follows it)",
         lambda f: f.since_same_click is not None and f.since_same_click < BURST),
)

REASONS: dict[str, str] = {r.code: r.reason for r in RULES} | {PERSON: "no sign of a machine"}
CODES: tuple[str, ...] = (*(r.code for r in RULES), PERSON)


def classify(facts: Facts) -> Verdict:
    for rule in RULES:
        if facts.what in rule.applies_to and rule.test(facts):
            return Verdict(MACHINE, rule.code)
    return Verdict(HUMAN, PERSON)
