"""bccd.auth.dns.Resolver against the loopback test server."""

from __future__ import annotations

import threading
import time

import pytest

from bccd.auth.dns import Resolver
from bccd.auth.verdict import DnsTempError
from bccd.config import DnsSettings

pytestmark = pytest.mark.spec("4.2")


def test_txt_joins_character_strings_per_record(dns, resolver):
    dns.add_txt("multi.test", ["v=spf1 ", "-all"])
    dns.add_txt("multi.test", "other")
    assert sorted(resolver.txt("multi.test")) == [b"other", b"v=spf1 -all"]
    assert sorted(resolver.txt_strings("multi.test")) == [(b"other",), (b"v=spf1 ", b"-all")]


def test_nxdomain_and_nodata_are_empty(dns, resolver):
    dns.add_a("host.test", "192.0.2.1")
    assert resolver.txt("nothing.test") == []
    assert resolver.txt("host.test") == []
    assert resolver.a("host.test") == ["192.0.2.1"]


def test_all_record_types(dns, resolver):
    dns.add_a("h.test", "192.0.2.1")
    dns.add_aaaa("h.test", "2001:db8::1")
    dns.add_mx("h.test", 10, "mx.h.test")
    dns.add_ptr("1.2.0.192.in-addr.arpa", "h.test")
    dns.add_cname("alias.test", "h.test")
    assert resolver.aaaa("h.test") == ["2001:db8::1"]
    assert resolver.mx("h.test") == [(10, "mx.h.test")]
    assert resolver.ptr("1.2.0.192.in-addr.arpa") == ["h.test"]
    assert resolver.a("alias.test") == ["192.0.2.1"]
    assert resolver.a("ALIAS.test.") == ["192.0.2.1"]


def test_large_answer_is_retried_over_tcp(dns, resolver):
    dns.add_txt("big.test", "k" * 3000)
    assert resolver.txt("big.test") == [b"k" * 3000]
    assert dns.queries.count(("big.test", "TXT")) == 2  # truncated UDP, then TCP


def test_servfail_raises(dns, resolver):
    dns.servfail("broken.test")
    with pytest.raises(DnsTempError, match="server failure"):
        resolver.txt("broken.test")


def test_timeout_raises_within_the_configured_time(dns, resolver):
    dns.timeout("slow.test")
    start = time.monotonic()
    with pytest.raises(DnsTempError, match="timeout"):
        resolver.txt("slow.test")
    assert time.monotonic() - start < resolver.timeout + 1.0


def test_timeout_spares_listed_types(dns, resolver):
    dns.add_txt("half.test", "v=spf1 -all")
    dns.timeout("half.test", except_types=["TXT"])
    assert resolver.txt("half.test") == [b"v=spf1 -all"]
    with pytest.raises(DnsTempError):
        resolver.a("half.test")


def test_unreachable_server_raises(dns):
    dead = Resolver(["127.0.0.1"], port=9, timeout=0.3)
    with pytest.raises(DnsTempError):
        dead.txt("corp.test")


def test_invalid_names_are_empty_without_asking(dns, resolver):
    assert resolver.txt("a" * 64 + ".test") == []
    assert resolver.txt("a..test") == []
    assert dns.queries == []


def test_answers_are_cached_within_ttl(dns, resolver):
    dns.add_txt("cached.test", "one", ttl=300)
    assert resolver.txt("cached.test") == [b"one"]
    dns.clear()
    dns.add_txt("cached.test", "two", ttl=300)
    assert resolver.txt("cached.test") == [b"one"]
    assert dns.queries == []
    resolver.flush()
    assert resolver.txt("cached.test") == [b"two"]


def test_answers_expire_with_their_ttl(dns, resolver):
    dns.add_txt("short.test", "one", ttl=1)
    assert resolver.txt("short.test") == [b"one"]
    time.sleep(1.1)
    assert resolver.txt("short.test") == [b"one"]
    assert dns.queries.count(("short.test", "TXT")) == 2


def test_cache_is_bounded(dns):
    small = Resolver(["127.0.0.1"], port=dns.port, timeout=5, cache_size=2)
    for i in range(4):
        dns.add_txt(f"n{i}.test", str(i))
        small.txt(f"n{i}.test")
    small.txt("n0.test")
    assert dns.queries.count(("n0.test", "TXT")) == 2


def test_thread_safe(dns, resolver):
    for i in range(20):
        dns.add_a(f"t{i}.test", f"192.0.2.{i + 1}")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                assert resolver.a(f"t{i}.test") == [f"192.0.2.{i + 1}"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_from_settings(dns):
    r = Resolver.from_settings(DnsSettings(nameservers=["127.0.0.1"], port=dns.port, timeout=2))
    assert (r.nameservers, r.port, r.timeout) == (["127.0.0.1"], dns.port, 2)
    dns.add_txt("cfg.test", "ok")
    assert r.txt("cfg.test") == [b"ok"]
