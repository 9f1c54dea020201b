"""The public tracking endpoints under hostile requests (SPEC §13): every tampering with a
real token — another message, another link, truncated, lengthened, another message's
signature, the wrong kind, a key nobody configured, expired, a message that is gone —
answers ``404``, redirects nowhere and writes nothing; a redirect's target comes from the
stored message, never from the request; the per-token rate limit lets 10 a minute
through and answers ``429`` past it without a write; bodies and other methods are refused;
``/metrics`` counts hits by kind and refusals by reason."""

from __future__ import annotations

import base64
import re
import time

import httpx
import pytest

from bccd.tracking import tokens
from tests.support import tracking_kit as tk
from tests.support.compose_world import ComposeWorld, Mailuser

pytestmark = [pytest.mark.slow, pytest.mark.spec("13"), pytest.mark.xdist_group("tracking")]

HTML = '<p><a href="https://example.com/a">a</a> <a href="https://example.com/b">b</a></p>'


def _key(world: ComposeWorld) -> bytes:
    return tokens.derive((world.srv.dir / "var" / "secret_key").read_text().strip())


def _token(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _enc(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _metric(world: ComposeWorld, name: str, **labels: str) -> float:
    body = httpx.get(f"{world.srv.http_url}/metrics", timeout=20).text
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", body, re.MULTILINE):
        if dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == labels:
            return float(m.group(2))
    return 0.0


@pytest.fixture(scope="module")
def tracked(world: ComposeWorld) -> tuple[Mailuser, dict, tk.Received, tk.Received]:
    """Two tracked messages of one user (A and B)."""
    user = world.user("tamper")
    tk.enable(world, user)
    a, _ = tk.send(world, user, html=HTML, subject="Message A")
    b, _ = tk.send(world, user, html=HTML, subject="Message B")
    return user, a, tk.received(world, a["message_id"]), tk.received(world, b["message_id"])


def test_every_tampering_answers_404_redirects_nowhere_and_writes_nothing(
        world: ComposeWorld, tracked: tuple) -> None:
    _, _, a, b = tracked
    key = _key(world)
    click_a, click_b = _raw(_token(a.link_path(0))), _raw(_token(b.link_path(0)))
    claim = tokens.verify([key], "c", _token(a.link_path(0)), now=int(time.time()), ttl=10**8)
    assert claim is not None
    forged: dict[str, str] = {}
    for offset, field in ((1, "message"), (8, "message"), (10, "link"), (13, "issued"),
                          (20, "mac"), (30, "mac")):
        changed = bytearray(click_a)
        changed[offset] ^= 0x01
        forged[f"changed {field} byte {offset}"] = f"/t/c/{_enc(changed)}"
    link1 = _raw(_token(a.link_path(1)))
    forged |= {
        "another link index under this link's MAC": f"/t/c/{_enc(link1[:15] + click_a[15:])}",
        "message A's claim with B's signature": f"/t/c/{_enc(click_a[:15] + click_b[15:])}",
        "message B's claim with A's signature": f"/t/c/{_enc(click_b[:15] + click_a[15:])}",
        "truncated by one": a.link_path(0)[:-1],
        "truncated by half": a.link_path(0)[:-21],
        "lengthened": a.link_path(0) + "A",
        "a pixel token as a link": f"/t/c/{_token(a.pixel_path)}",
        "a link token as the pixel": f"/t/o/{_token(a.link_path(0))}",
        "signed with a key nobody configured": "/t/c/" + tokens.issue(
            tokens.derive("a key rotated out long ago"), "c", claim.tracking_id, 0, claim.issued),
        "expired (issued 366 days ago)": "/t/c/" + tokens.issue(
            key, "c", claim.tracking_id, 0, int(time.time()) - 366 * 86400),
        "from the future": "/t/c/" + tokens.issue(key, "c", claim.tracking_id, 0,
                                                  int(time.time()) + 3600),
        "a link index past the message's links": "/t/c/" + tokens.issue(
            key, "c", claim.tracking_id, 7, claim.issued),
        "garbage": "/t/c/" + "A" * 42,
        "a path": "/t/c/..%2F..%2Fmail",
        "empty": "/t/c/",
    }
    before = tk.hit_rows(world)
    invalid = _metric(world, "bccd_tracking_refused_total", why="invalid")
    for what, path in forged.items():
        r = tk.fetch(world, path, tk.BROWSER)
        assert r.status_code == 404, what
        assert "location" not in r.headers and "set-cookie" not in r.headers, what
        assert r.headers["cache-control"].startswith("no-store"), what
    assert tk.hit_rows(world) == before
    # all but the ones that needed the database to tell (an index past the links) were
    # refused before it
    assert _metric(world, "bccd_tracking_refused_total", why="invalid") >= invalid + len(forged) - 3
    assert _metric(world, "bccd_tracking_refused_total", why="unknown") >= 1


def test_the_redirect_target_comes_from_the_stored_message_only(
        world: ComposeWorld, tracked: tuple) -> None:
    _, _, a, _ = tracked
    for extra in ("?url=https://evil.example/", "?next=//evil.example&to=https://evil.example",
                  "#https://evil.example"):
        r = tk.fetch(world, a.link_path(1) + extra, tk.BROWSER,
                     headers={"Host": "evil.example", "Referer": "https://evil.example/",
                              "X-Forwarded-Host": "evil.example"})
        assert r.status_code == 302 and r.headers["location"] == "https://example.com/b"


def test_the_rate_limit_lets_ten_a_minute_through_per_token_and_writes_nothing_past_it(
        world: ComposeWorld) -> None:
    user = world.user("limited")
    tk.enable(world, user)
    sent, _ = tk.send(world, user, html=HTML, subject="Rate limited")
    got = tk.received(world, sent["message_id"])
    before = len(tk.hit_rows(world))
    limited = _metric(world, "bccd_tracking_refused_total", why="rate_limited")
    answers = [tk.fetch(world, got.pixel_path, tk.BROWSER) for _ in range(25)]
    codes = [r.status_code for r in answers]
    assert codes == [200] * 10 + [429] * 15
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers[10:])
    assert all(r.headers["cache-control"].startswith("no-store") for r in answers)
    assert len(tk.hit_rows(world)) == before + 10
    assert _metric(world, "bccd_tracking_refused_total", why="rate_limited") == limited + 15
    # per token: the links of the same message still pass
    assert tk.fetch(world, got.link_path(0), tk.BROWSER).status_code == 302
    # and the bucket refills: one more after six seconds
    time.sleep(6.5)
    assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 200
    assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 429


def test_a_body_or_another_method_is_refused(world: ComposeWorld, tracked: tuple) -> None:
    _, _, a, _ = tracked
    before = tk.hit_rows(world)
    with tk.client(world, tk.BROWSER) as c:
        assert c.post(a.link_path(0), content=b"x" * 10).status_code == 413
        assert c.post(a.link_path(0)).status_code == 405
        assert c.put(a.pixel_path).status_code == 405
        assert c.delete(a.pixel_path).status_code == 405
    assert tk.hit_rows(world) == before


def test_hits_are_counted_by_kind_in_metrics(world: ComposeWorld, tracked: tuple) -> None:
    _, _, _, b = tracked
    human = _metric(world, "bccd_tracking_hits_total", what="open", kind="human", reason="person")
    proxy = _metric(world, "bccd_tracking_hits_total", what="open", kind="machine",
                    reason="gmail-proxy")
    assert tk.fetch(world, b.pixel_path, tk.BROWSER).status_code == 200
    assert tk.fetch(world, b.pixel_path, tk.GMAIL_PROXY).status_code == 200
    assert _metric(world, "bccd_tracking_hits_total", what="open", kind="human",
                   reason="person") == human + 1
    assert _metric(world, "bccd_tracking_hits_total", what="open", kind="machine",
                   reason="gmail-proxy") == proxy + 1


def test_a_deleted_messages_links_are_unknown(world: ComposeWorld) -> None:
    user = world.user("deleter")
    tk.enable(world, user)
    sent, _ = tk.send(world, user, html=HTML, subject="To be deleted")
    got = tk.received(world, sent["message_id"])
    assert tk.fetch(world, got.link_path(0), tk.BROWSER).status_code == 302
    with world.api(user.token) as api:
        assert api.delete(f"/threads/{sent['thread_id']}").status_code in (200, 204)
    before = tk.hit_rows(world)
    assert tk.fetch(world, got.link_path(0), tk.BROWSER).status_code == 404
    assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 404
    assert tk.hit_rows(world) == before
    assert not [r for r in before if r[0] == tokens.verify(
        [_key(world)], "o", _token(got.pixel_path), now=int(time.time()), ttl=10**8).tracking_id]
