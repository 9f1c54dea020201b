"""Issue #17, item 3: inline images cannot amplify a page (SPEC §9: a rendered message
embeds each inline part once and a page stays within 10× the size of the messages it
shows).

The thread page used to turn every ``cid:`` reference into a ``data:`` URI of the whole
image: a 145 KB message with one 100 KB image referenced 300 times rendered a 41 MB page.
Each hostile message below is sent over real SMTP and its conversation fetched over real
HTTP; the page's bytes are compared with the message's raw size."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import closing
from email.message import EmailMessage
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from pathlib import Path

import httpx
import pytest

from tests.support.mail import send
from tests.support.server import BccdServer

pytestmark = pytest.mark.xdist_group("security_inline")

RATIO = 10
CHROMIUM = os.environ.get("BCCD_TEST_CHROMIUM", "/usr/bin/chromium")


def png(size: int, seed: int = 0) -> bytes:
    """Bytes that start like a PNG (the page never decodes them)."""
    body = bytes((seed + i * 7) % 251 for i in range(max(0, size - 8)))
    return b"\x89PNG\r\n\x1a\n" + body


def related(html: str, parts: list[tuple[str, str, bytes]], *, subject: str) -> bytes:
    """A multipart/related message: ``html`` plus parts ``(cid, content type, bytes)``."""
    root = MIMEMultipart("related")
    root.attach(MIMEText(html, "html"))
    for cid, ctype, data in parts:
        maintype, subtype = ctype.split("/")
        part = MIMEImage(data, _subtype=subtype) if maintype == "image" else MIMEText(
            data.decode(), subtype)
        part["Content-ID"] = f"<{cid}>"
        root.attach(part)
    return _headers(root, subject)


def _headers(msg: EmailMessage | MIMEMultipart, subject: str) -> bytes:
    msg["From"] = "Alice <alice@acme.test>"
    msg["To"] = "Dana <dana@client.test>"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{re.sub(r'[^a-z0-9]+', '-', subject.lower())}@acme.test>"
    return msg.as_bytes(policy=SMTP)


def nested(subject: str) -> bytes:
    """related inside related inside alternative; both levels reference the same image."""
    img = png(60_000, 3)
    inner = MIMEMultipart("related")
    inner.attach(MIMEText("<p>" + '<img src="cid:deep">' * 300 + "</p>", "html"))
    deep = MIMEImage(img, _subtype="png")
    deep["Content-ID"] = "<deep>"
    inner.attach(deep)
    outer = MIMEMultipart("related")
    outer.attach(inner)
    again = MIMEImage(img, _subtype="png")
    again["Content-ID"] = "<deep2>"
    outer.attach(again)
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("plain\n", "plain"))
    alt.attach(outer)
    return _headers(alt, subject)


HOSTILE = {
    # the reviewer's case: one 100 KB image, 300 references
    "one image referenced 300 times": lambda s: related(
        "<p>" + '<img src="cid:logo">' * 300 + "</p>", [("logo", "image/png", png(100_000))],
        subject=s),
    # as large as one inline image may be, referenced many times
    "a large image referenced 100 times": lambda s: related(
        '<img src="cid:big">' * 100, [("big", "image/png", png(1_900_000, 1))], subject=s),
    # a huge image (over the per-image limit)
    "a huge image": lambda s: related(
        '<img src="cid:huge">' * 50, [("huge", "image/png", png(4_000_000, 2))], subject=s),
    # many distinct small images, each referenced several times
    "many distinct small images": lambda s: related(
        "".join(f'<img src="cid:i{i}">' * 3 for i in range(1500)),
        [(f"i{i}", "image/gif", png(40, i)) for i in range(1500)], subject=s),
    # a cid that names a part which is not an image
    "a cid naming a non-image part": lambda s: related(
        '<img src="cid:page">' * 300, [("page", "text/html", b"<p>" + b"x" * 50_000 + b"</p>")],
        subject=s),
    "nested related parts": nested,
    # markup the sanitizer lengthens (every <a> gains target and rel)
    "markup the sanitizer lengthens": lambda s: related("<a>" * 60_000, [], subject=s),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BccdServer, dict[str, str]]]:
    srv = BccdServer(tmp_path_factory.mktemp("inline"),
                     {"smtp": {"max_message_size": 30 * 1024 * 1024}})
    srv.start()
    try:
        alice = srv.setup_user("alice@acme.test")
        bob = srv.setup_user("bob@acme.test", name="Bob")
        for name, build in HOSTILE.items():
            raw = build(name)
            code, text = send(srv.smtp_port, alice["bcc_address"], raw)
            assert code == 250, (name, code, text)
        yield srv, {"alice": alice["api_token"], "bob": bob["api_token"]}
    finally:
        srv.stop()


def _sign_in(base: str, token: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=60)
    page = http.get("/mail/login").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = http.post("/mail/login", data={"nonce": nonce, "token": token})
    assert r.status_code == 303, r.text
    return http


def _threads(srv: BccdServer, token: str) -> dict[str, tuple[int, int]]:
    """subject → (thread id, raw size of its one message)."""
    api = httpx.Client(base_url=f"{srv.http_url}/api/v1",
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
    with closing(api):
        out = {}
        for t in api.get("/threads", params={"limit": 100}).json()["threads"]:
            detail = srv.cli("mail", "show", str(t["thread_id"]))
            assert len(detail["messages"]) == 1
            raw = httpx.get(f"{srv.http_url}/api/v1/messages/{detail['messages'][0]['id']}/raw",
                            headers={"Authorization": f"Bearer {token}"}, timeout=60)
            out[t["subject"]] = (t["thread_id"], len(raw.content))
        return out


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_message_renders_a_page_within_10x_its_size(
        site: tuple[BccdServer, dict[str, str]], case: str) -> None:
    srv, tokens = site
    thread_id, raw_size = _threads(srv, tokens["alice"])[case]
    with closing(_sign_in(srv.http_url, tokens["alice"])) as http:
        r = http.get(f"/mail/threads/{thread_id}")
        assert r.status_code == 200
        page = len(r.content)
    print(f"{case}: message {raw_size} B, page {page} B, ratio {page / raw_size:.2f}")
    assert page <= RATIO * raw_size, f"{case}: page {page} B for a {raw_size} B message"


def test_an_inline_image_is_served_once_by_address_to_its_viewer_only(
        site: tuple[BccdServer, dict[str, str]]) -> None:
    srv, tokens = site
    thread_id, _ = _threads(srv, tokens["alice"])["one image referenced 300 times"]
    with closing(_sign_in(srv.http_url, tokens["alice"])) as http:
        page = http.get(f"/mail/threads/{thread_id}").text
        urls = set(re.findall(r"/mail/inline/[A-Za-z0-9_/-]+", page))
        assert len(urls) == 1  # 300 references, one address
        url = urls.pop()
        assert page.count(url) == 300
        img = httpx.get(f"{srv.http_url}{url}", timeout=60)  # no cookie: the frame sends none
        assert img.status_code == 200 and img.content == png(100_000)
        assert img.headers["content-type"] == "image/png"
        assert img.headers["x-content-type-options"] == "nosniff"
        assert "private" in img.headers["cache-control"]
        # another session's address for the same image, or a changed MAC: not found
        session_id, att_id, mac = url.rsplit("/", 3)[1:]
        forged = f"/mail/inline/{int(session_id) + 1}/{att_id}/{mac}"
        assert httpx.get(f"{srv.http_url}{forged}", timeout=60).status_code == 404
        assert httpx.get(f"{srv.http_url}/mail/inline/{session_id}/{att_id}/{'A' * 32}",
                         timeout=60).status_code == 404
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        assert http.post("/mail/logout", data={"csrf": csrf}).status_code == 303
    # signed out: the address no longer works
    assert httpx.get(f"{srv.http_url}{url}", timeout=60).status_code == 404
    # bob (same company) may not see alice's private thread, nor its image
    with closing(_sign_in(srv.http_url, tokens["bob"])) as bob:
        assert bob.get(f"/mail/threads/{thread_id}").status_code == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_inline_images_show_in_the_sandboxed_message_frame(
        site: tuple[BccdServer, dict[str, str]]) -> None:
    from playwright.sync_api import sync_playwright

    srv, tokens = site
    good = related('<p>A logo: <img alt="logo" src="cid:ok"></p>', [("ok", "image/gif", GIF)], subject="A real image")
    assert send(srv.smtp_port, srv.cli("user", "show", "alice@acme.test")["bcc_address"], good)[0] == 250
    thread_id = _threads(srv, tokens["alice"])["A real image"][0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"{srv.http_url}/mail/login")
            page.click("summary")  # the token form sits below the emailed-link form
            page.fill("#token", tokens["alice"])
            page.click("details button[type=submit]")
            page.wait_for_url("**/mail")
            page.goto(f"{srv.http_url}/mail/threads/{thread_id}")
            frame = page.frame_locator("iframe").first
            img = frame.locator("img[alt=logo]")
            img.wait_for()
            page.wait_for_timeout(500)
            assert img.evaluate("i => i.complete && i.naturalWidth") == 1
        finally:
            browser.close()


# a 1×1 GIF
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
