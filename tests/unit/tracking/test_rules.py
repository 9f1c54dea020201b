"""The machine-hit rules (SPEC §13): one case per rule and per documented client — each
a test named by the table — and the people who must stay people."""

from __future__ import annotations

import pytest

from bccd.tracking import rules
from bccd.tracking.rules import CLICK, HUMAN, MACHINE, OPEN, Facts, classify
from bccd.tracking.tokens import DECOY

pytestmark = pytest.mark.spec("13")

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/18.1 Safari/605.1.15")
OUTLOOK_DESKTOP = ("Mozilla/4.0 (compatible; ms-office; MSOffice 16; Microsoft Outlook "
                   "16.0.17928; Pro)")
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
APPLE_MAIL_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                  "(KHTML, like Gecko)")
APPLE_MAIL_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                  "(KHTML, like Gecko) Mobile/15E148")

LATE = 3600.0   # an hour after sending

# (case, facts, expected kind, expected code) — the table of SPEC §13's machines and people
CASES: list[tuple[str, Facts, str, str]] = [
    # people
    ("a browser opens the pixel", Facts(OPEN, user_agent=CHROME), HUMAN, "person"),
    ("Outlook on the desktop loads the images", Facts(OPEN, user_agent=OUTLOOK_DESKTOP),
     HUMAN, "person"),
    ("Thunderbird loads the images", Facts(OPEN, user_agent=THUNDERBIRD), HUMAN, "person"),
    ("a person clicks in Firefox an hour later",
     Facts(CLICK, user_agent=FIREFOX, link=0, since_sent=LATE), HUMAN, "person"),
    ("a click from Apple Mail opens Safari (iPhone)",
     Facts(CLICK, user_agent=SAFARI_IOS, link=1, since_sent=LATE), HUMAN, "person"),
    ("a second link two seconds after the first is a person reading on",
     Facts(CLICK, user_agent=SAFARI_MAC, link=1, since_sent=LATE, since_other_click=2.0),
     HUMAN, "person"),
    ("the same link again after a while", Facts(CLICK, user_agent=CHROME, link=0,
                                                 since_sent=LATE, since_same_click=30.0),
     HUMAN, "person"),
    ("a person opens the mail seconds after it was sent (only clicks are held to 10 s)",
     Facts(OPEN, user_agent=CHROME, since_sent=2.0), HUMAN, "person"),
    # image proxies that prefetch
    ("Gmail's image proxy", Facts(OPEN, user_agent=GMAIL), MACHINE, "gmail-proxy"),
    ("Gmail's proxy named by ggpht.com alone",
     Facts(OPEN, user_agent="Mozilla/5.0 (via ggpht.com)"), MACHINE, "gmail-proxy"),
    ("Yahoo Mail's proxy", Facts(OPEN, user_agent=YAHOO), MACHINE, "yahoo-proxy"),
    ("Apple Mail Privacy Protection's bare user agent",
     Facts(OPEN, user_agent="Mozilla/5.0"), MACHINE, "apple-mpp"),
    ("Apple Mail on a Mac (its loads look like the protection's)",
     Facts(OPEN, user_agent=APPLE_MAIL_MAC), MACHINE, "apple-mpp"),
    ("Apple Mail on an iPhone", Facts(OPEN, user_agent=APPLE_MAIL_IOS), MACHINE, "apple-mpp"),
    ("Apple Mail fetching a link (a link preview)",
     Facts(CLICK, user_agent=APPLE_MAIL_IOS, link=0, since_sent=LATE), MACHINE, "apple-mpp"),
    ("Microsoft Office checking a link",
     Facts(CLICK, user_agent="Microsoft Office Existence Discovery", link=0, since_sent=LATE),
     MACHINE, "microsoft-preview"),
    ("Outlook.com's Bing link preview",
     Facts(CLICK, user_agent="Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 BingPreview/1.0b",
           link=0, since_sent=LATE), MACHINE, "microsoft-preview"),
    # link scanners
    ("a HEAD request for a link", Facts(CLICK, method="HEAD", user_agent=CHROME, link=0,
                                        since_sent=LATE), MACHINE, "head"),
    ("a HEAD request for the pixel", Facts(OPEN, method="HEAD", user_agent=CHROME),
     MACHINE, "head"),
    ("a click within 10 s of sending", Facts(CLICK, user_agent=CHROME, link=0, since_sent=3.0),
     MACHINE, "too-soon"),
    ("a click at 9.9 s", Facts(CLICK, user_agent=CHROME, link=0, since_sent=9.9),
     MACHINE, "too-soon"),
    ("the hidden decoy link, even from a browser and late",
     Facts(CLICK, user_agent=CHROME, link=DECOY, since_sent=LATE), MACHINE, "decoy"),
    ("another link of the message clicked 0.3 s before",
     Facts(CLICK, user_agent=CHROME, link=2, since_sent=LATE, since_other_click=0.3),
     MACHINE, "burst"),
    ("the same link twice within a second",
     Facts(CLICK, user_agent=CHROME, link=0, since_sent=LATE, since_same_click=0.2),
     MACHINE, "repeat"),
    ("Proofpoint's scanner", Facts(CLICK, user_agent="Mozilla/5.0 (compatible; Proofpoint)",
                                   link=0, since_sent=LATE), MACHINE, "scanner"),
    ("Mimecast", Facts(CLICK, user_agent="Mimecast URL Protect/1.0", link=0, since_sent=LATE),
     MACHINE, "scanner"),
    ("a headless browser", Facts(OPEN, user_agent=CHROME.replace("Chrome/", "HeadlessChrome/")),
     MACHINE, "scanner"),
    ("Googlebot", Facts(CLICK, user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; "
                        "+http://www.google.com/bot.html)", link=0, since_sent=LATE),
     MACHINE, "scanner"),
    ("an HTTP library", Facts(CLICK, user_agent="python-requests/2.32.3", link=0, since_sent=LATE),
     MACHINE, "scanner"),
    ("curl", Facts(OPEN, user_agent="curl/8.5.0"), MACHINE, "scanner"),
    ("Slack unfurling a link", Facts(CLICK, user_agent="Slackbot-LinkExpanding 1.0 "
                                     "(+https://api.slack.com/robots)", link=0, since_sent=LATE),
     MACHINE, "scanner"),
    ("no user agent", Facts(OPEN, user_agent=""), MACHINE, "no-user-agent"),
    ("a user agent no browser sends", Facts(CLICK, user_agent="Mozilla", link=0,
                                            since_sent=LATE), MACHINE, "no-user-agent"),
    ("a browser prefetch", Facts(CLICK, user_agent=CHROME, purpose="prefetch", link=0,
                                 since_sent=LATE), MACHINE, "prefetch"),
    ("a Safari preview", Facts(CLICK, user_agent=SAFARI_MAC, purpose="preview", link=0,
                               since_sent=LATE), MACHINE, "prefetch"),
    # the sender's own views
    ("the sender opens their own message", Facts(OPEN, user_agent=CHROME, sender_session=True),
     MACHINE, "sender"),
    ("the sender clicks a link of their own message",
     Facts(CLICK, user_agent=CHROME, sender_session=True, link=0, since_sent=LATE),
     MACHINE, "sender"),
]


@pytest.mark.parametrize("case,facts,kind,code", CASES, ids=[c[0] for c in CASES])
def test_machine_hit_rules(case: str, facts: Facts, kind: str, code: str) -> None:
    assert classify(facts) == rules.Verdict(kind, code)


def test_every_rule_has_a_case_and_a_reason_for_people() -> None:
    covered = {code for _, _, _, code in CASES}
    assert covered == set(rules.CODES)
    assert all(len(rules.REASONS[c]) > 10 for c in rules.CODES)
    assert len(set(rules.CODES)) == len(rules.CODES)


def test_rules_about_clicks_never_touch_opens() -> None:
    # an open right after sending, or right after a click, is not held to the click rules
    assert classify(Facts(OPEN, user_agent=CHROME, since_sent=0.0, since_other_click=0.1,
                          since_same_click=0.1)).kind == HUMAN
