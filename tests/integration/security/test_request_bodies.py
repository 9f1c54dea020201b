"""Issue #17, item 2: request bodies are limited while they stream (SPEC §9).

A chunked body of 500 MB sent without a token used to be read whole before the ``401``
(the server process grew by the size of the body, twice over while it was joined). Every
route now answers ``413`` once the limit is passed, before authentication, holding at
most the limit; the server's peak memory (``VmHWM``) stays flat."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.security.conftest import RawUpload, memory_kib
from tests.support.server import BccdServer

MiB = 1024 * 1024
BOUND_KIB = 50 * 1024  # the server may grow by less than 50 MB

pytestmark = pytest.mark.xdist_group("security_bodies")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    s = BccdServer(tmp_path_factory.mktemp("bodies"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _pid(srv: BccdServer) -> int:
    assert srv.proc is not None
    return srv.proc.pid


def test_a_chunked_500mb_body_without_token_is_413_with_flat_rss(srv: BccdServer) -> None:
    before = memory_kib(_pid(srv))
    up = RawUpload(srv.http_port, "POST", "/api/v1/me/alternates", 500 * MiB)
    status = up.run()
    after = memory_kib(_pid(srv))
    grew = after["VmHWM"] - before["VmHWM"]
    print(f"sent {up.sent / MiB:.1f} MiB of 500; VmHWM +{grew} KiB; VmRSS {before['VmRSS']}"
          f" -> {after['VmRSS']} KiB")
    assert status == 413, up.response[:300]
    assert b"application/problem+json" in up.response
    assert grew < BOUND_KIB
    assert up.sent < 50 * MiB  # refused while it streamed, not after


@pytest.mark.parametrize("method,path", [
    ("POST", "/mail/login"),                 # the sign-in form
    ("POST", "/mail/logout"),                # a form behind a session
    ("POST", "/confirm/abcdefghijklmnop"),   # the confirmation page
    ("GET", "/metrics"),                     # a route that never reads a body
    ("POST", "/no/such/route"),
])
def test_a_chunked_500mb_body_to_any_route_is_413(srv: BccdServer, method: str, path: str) -> None:
    before = memory_kib(_pid(srv))
    up = RawUpload(srv.http_port, method, path, 500 * MiB)
    status = up.run()
    grew = memory_kib(_pid(srv))["VmHWM"] - before["VmHWM"]
    assert status == 413, up.response[:300]
    assert b"text/html" in up.response
    assert grew < BOUND_KIB
    assert up.sent < 50 * MiB


def test_four_chunked_500mb_bodies_at_once_leave_the_server_flat(srv: BccdServer) -> None:
    before = memory_kib(_pid(srv))
    uploads = [RawUpload(srv.http_port, "POST", p, 500 * MiB) for p in
               ("/api/v1/me/alternates", "/api/v1/admin/persons/x", "/mail/login",
                "/confirm/abcdefghijklmnop")]
    with ThreadPoolExecutor(len(uploads)) as pool:
        statuses = list(pool.map(lambda u: u.run(), uploads))
    grew = memory_kib(_pid(srv))["VmHWM"] - before["VmHWM"]
    assert statuses == [413] * 4
    assert grew < BOUND_KIB
    # and the server still answers
    up = RawUpload(srv.http_port, "GET", "/healthz", 0)
    assert up.run() == 200


def test_a_declared_content_length_over_the_limit_is_413_before_any_byte(srv: BccdServer) -> None:
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as sock:
        sock.sendall(b"PUT /api/v1/admin/persons/x HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 600000000\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
