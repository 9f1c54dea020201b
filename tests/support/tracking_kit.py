"""Helpers for the tracking tests (SPEC §13): the clients that fetch a tracked message's
pixel and links — each posing as what it claims by its user agent and behaviour —, what a
recipient received (the pixel, the visible links, the hidden decoy), and the hits bccd
recorded, counted straight from its database (to show that a refused request wrote
nothing)."""

from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")
GMAIL_PROXY = ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
               "(via ggpht.com GoogleImageProxy)")
APPLE_MPP = "Mozilla/5.0"
SCANNER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
PROOFPOINT = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"


@dataclass
class Received:
    """What a recipient's mail program got."""

    raw: bytes
    html: str
    text: str
    pixel: str | None
    links: list[str]         # the visible links' addresses, in document order
    decoy: str | None

    @property
    def pixel_path(self) -> str:
        assert self.pixel is not None
        return _path(self.pixel)

    def link_path(self, i: int) -> str:
        return _path(self.links[i])

    @property
    def decoy_path(self) -> str:
        assert self.decoy is not None
        return _path(self.decoy)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def received(world: ComposeWorld, message_id: str) -> Received:
    [raw] = world.received(message_id)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    html_part = msg.get_body(("html",))  # type: ignore[attr-defined]
    text_part = msg.get_body(("plain",))  # type: ignore[attr-defined]
    html = html_part.get_content() if html_part is not None else ""
    anchors = re.findall(r'<a href="([^"]+)"([^>]*)>', html)
    decoy = [href for href, attrs in anchors if "display:none" in attrs]
    links = [href for href, attrs in anchors if "display:none" not in attrs]
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html)
    return Received(raw, html, text_part.get_content() if text_part is not None else "",
                    pixel.group(1) if pixel else None, links, decoy[0] if decoy else None)


def enable(world: ComposeWorld, user: Mailuser, *, opens: bool = True, clicks: bool = True
           ) -> dict[str, Any]:
    with world.api(user.token) as api:
        r = api.patch("/me/settings", json={"tracking_opens": opens, "tracking_clicks": clicks})
        assert r.status_code == 200, r.text
        return dict(r.json())


def send(world: ComposeWorld, user: Mailuser, **body: Any) -> tuple[dict[str, Any], float]:
    """A message sent through the API → (its answer, when it was sent: time.monotonic())."""
    payload = {"to": ["Dana Client <dana@client.test>"], "subject": "Tracked offer"} | body
    with world.api(user.token) as api:
        r = api.post("/messages", json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json()), time.monotonic()


def client(world: ComposeWorld, agent: str | None, *, cookies: dict[str, str] | None = None
           ) -> httpx.Client:
    c = httpx.Client(base_url=world.srv.http_url, timeout=20, follow_redirects=False,
                     cookies=cookies)
    if agent is None:
        c.headers.pop("User-Agent", None)
    else:
        c.headers["User-Agent"] = agent
    return c


def fetch(world: ComposeWorld, path: str, agent: str | None = BROWSER, *, method: str = "GET",
          headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
          ) -> httpx.Response:
    with client(world, agent, cookies=cookies) as c:
        return c.request(method, path, headers=headers or {})


def tracking_of(world: ComposeWorld, user: Mailuser, sent: dict[str, Any]) -> Any:
    with world.api(user.token) as api:
        thread = api.get(f"/threads/{sent['thread_id']}").json()
    [m] = [m for m in thread["messages"] if m["id"] == sent["id"]]
    return m["tracking"]


def db_url(world: ComposeWorld) -> str:
    url = world.srv.sections.get("database", {}).get("url")
    return str(url) if url else f"sqlite:///{world.srv.dir / 'var' / 'bccd.sqlite3'}"


def hit_rows(world: ComposeWorld) -> list[tuple[Any, ...]]:
    """Every stored hit: (tracking id, link, kind, reason), oldest first."""
    engine = create_engine(db_url(world))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT tracking_id, link, kind, reason FROM tracking_hits ORDER BY id"))]
    finally:
        engine.dispose()


def after_sending(sent_at: float, seconds: float) -> None:
    """Wait until ``seconds`` have passed since the message went out."""
    left = sent_at + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)


def events_for(world: ComposeWorld, type_: str, message_id: int, *, at_least: int = 1,
               timeout: float = 30.0) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        got = [e for e in world.hook_events(type_) if e["data"].get("id") == message_id]
        return got if len(got) >= at_least else []

    return list(wait_for(found, timeout))
