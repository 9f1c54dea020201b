"""A small authoritative DNS server on 127.0.0.1 for tests (dnslib, UDP and TCP).

Contract:

- ``DnsTestServer()`` binds UDP and TCP on the same free port chosen by the OS
  (``.port``), loopback only; ``start()``/``stop()`` or ``with DnsTestServer() as s``.
- Zone data is set per test: ``add_txt``, ``add_a``, ``add_aaaa``, ``add_mx``, ``add_ptr``,
  ``add_cname``, ``add_spf`` (type 99) or ``add(name, qtype, value)``; ``servfail(name)``
  answers SERVFAIL, ``timeout(name)`` never answers (``except_types`` still answered);
  ``clear()`` forgets everything, the query log included.
- Names are case-insensitive; a trailing dot is optional. CNAMEs are followed inside the
  zone (as a recursive resolver would), loops stop after 8 steps. A name without any
  record is NXDOMAIN, a name with records of other types is NODATA.
- UDP answers over 512 octets (EDNS ignored) are truncated (TC), so clients retry over TCP.
- ``queries`` lists ``(name, qtype)`` as received, to assert caching and lookups.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dnslib import (
    AAAA,
    CNAME,
    MX,
    PTR,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSLabel,
    DNSRecord,
)
from dnslib.server import DNSHandler, DNSLogger, DNSServer

__all__ = ["DnsTestServer", "running_server", "txt_chunks"]

MAX_CNAME_CHAIN = 8
UDP_LIMIT = 512


Key = tuple[bytes, ...]


def _key(name: str | DNSLabel) -> Key:
    """A name as its lowercase labels (so escapes such as ``\\032`` compare equal)."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name.strip())
    return tuple(part.lower() for part in label.label)


def _text(key: Key) -> str:
    return ".".join(part.decode("latin-1") for part in key)


def txt_chunks(value: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """A TXT value as character-strings of at most 255 octets each.

    A ``str`` is encoded as Latin-1 when it can be (so test data written as ``\\xef``
    escapes yields those octets), else UTF-8. A sequence gives one string per item
    (each still split at 255).
    """
    items: Sequence[str | bytes] = [value] if isinstance(value, str | bytes) else value
    out: list[bytes] = []
    for item in items:
        if isinstance(item, str):
            try:
                raw = item.encode("latin-1")
            except UnicodeEncodeError:
                raw = item.encode("utf-8")
        else:
            raw = item
        if not raw:
            out.append(b"")
        for i in range(0, len(raw), 255):
            out.append(raw[i : i + 255])
    return out


@dataclass(frozen=True)
class _Record:
    qtype: str
    rdata: Any
    ttl: int


class _Handler(DNSHandler):
    """dnslib's handler, but a truncated UDP answer keeps its question (RFC 2181 §9)."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > UDP_LIMIT:
            header = DNSHeader(id=reply.header.id, qr=1, aa=1, ra=1, tc=1,
                               rcode=reply.header.rcode)
            packed = DNSRecord(header, q=reply.q).pack()
        return packed


class _SilentLogger(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error", prefix=False)


class _ZoneResolver:
    def __init__(self, server: DnsTestServer) -> None:
        self.server = server

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        return self.server._answer(request)


class DnsTestServer:
    """Authoritative loopback DNS server whose zone a test sets."""

    def __init__(self, host: str = "127.0.0.1", default_ttl: int = 300) -> None:
        self.host = host
        self.default_ttl = default_ttl
        self._lock = threading.Lock()
        self._zone: dict[Key, list[_Record]] = {}
        self._servfail: set[Key] = set()
        self._timeout: dict[Key, frozenset[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self._udp: DNSServer | None = None
        self._tcp: DNSServer | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> DnsTestServer:
        resolver = _ZoneResolver(self)
        last: OSError | None = None
        for _ in range(20):
            udp = DNSServer(resolver, port=0, address=self.host, logger=_SilentLogger(),
                            handler=_Handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, port=port, address=self.host, tcp=True,
                                logger=_SilentLogger(), handler=_Handler)
            except OSError as exc:  # that port is taken for TCP: try another one
                last = exc
                udp.server.server_close()
                continue
            self._udp, self._tcp, self.port = udp, tcp, port
            udp.start_thread()
            tcp.start_thread()
            return self
        raise RuntimeError(f"no free port for UDP and TCP on {self.host}: {last}")

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.stop()
                srv.server.server_close()
        self._udp = self._tcp = None

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- zone data -----------------------------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self._zone.clear()
            self._servfail.clear()
            self._timeout.clear()
            self.queries.clear()

    def add(self, name: str, qtype: str, value: Any, ttl: int | None = None) -> None:
        """Add one record; ``value`` as the matching ``add_*`` method takes it."""
        qtype = qtype.upper()
        rdata: Any
        if qtype in ("TXT", "SPF"):
            rdata = TXT(txt_chunks(value))
        elif qtype == "A":
            rdata = A(value)
        elif qtype == "AAAA":
            rdata = AAAA(value)
        elif qtype == "MX":
            pref, exchange = value
            rdata = MX(exchange or ".", int(pref))
        elif qtype == "PTR":
            rdata = PTR(value)
        elif qtype == "CNAME":
            rdata = CNAME(value)
        else:
            raise ValueError(f"unsupported record type {qtype}")
        rec = _Record(qtype, rdata, self.default_ttl if ttl is None else ttl)
        with self._lock:
            self._zone.setdefault(_key(name), []).append(rec)

    def add_txt(self, name: str, value: str | bytes | Sequence[str | bytes],
                ttl: int | None = None) -> None:
        self.add(name, "TXT", value, ttl)

    def add_spf(self, name: str, value: str | bytes | Sequence[str | bytes]) -> None:
        self.add(name, "SPF", value)

    def add_a(self, name: str, address: str, ttl: int | None = None) -> None:
        self.add(name, "A", address, ttl)

    def add_aaaa(self, name: str, address: str, ttl: int | None = None) -> None:
        self.add(name, "AAAA", address, ttl)

    def add_mx(self, name: str, preference: int, exchange: str) -> None:
        self.add(name, "MX", (preference, exchange))

    def add_ptr(self, name: str, target: str) -> None:
        self.add(name, "PTR", target)

    def add_cname(self, name: str, target: str) -> None:
        self.add(name, "CNAME", target)

    def servfail(self, name: str) -> None:
        with self._lock:
            self._servfail.add(_key(name))

    def timeout(self, name: str, except_types: Iterable[str] = ()) -> None:
        """Never answer queries for ``name`` (except for the listed record types)."""
        with self._lock:
            self._timeout[_key(name)] = frozenset(t.upper() for t in except_types)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(_text(k) for k in self._zone)

    # -- answering -----------------------------------------------------------------------

    def _answer(self, request: DNSRecord) -> DNSRecord:
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        reply = request.reply()
        with self._lock:
            name = _key(request.q.qname)
            self.queries.append((_text(name), qtype))
            seen: set[Key] = set()
            owner = request.q.qname
            for _ in range(MAX_CNAME_CHAIN + 1):
                if name in self._servfail:
                    reply.header.rcode = RCODE.SERVFAIL
                    return reply
                if name in self._timeout and qtype not in self._timeout[name]:
                    raise DNSError(f"simulated timeout for {_text(name)}")  # dnslib sends nothing
                records = self._zone.get(name)
                if records is None:
                    reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                matching = [r for r in records if r.qtype == qtype]
                if matching:
                    for r in matching:
                        reply.add_answer(RR(owner, getattr(QTYPE, r.qtype), rdata=r.rdata,
                                            ttl=r.ttl))
                    return reply
                cnames = [r for r in records if r.qtype == "CNAME"]
                if not cnames:
                    return reply  # NODATA
                cname = cnames[0]
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=cname.rdata, ttl=cname.ttl))
                seen.add(name)
                owner = cname.rdata.label
                name = _key(owner)
                if name in seen:
                    return reply  # a loop: what has been collected so far
            return reply


@contextlib.contextmanager
def running_server() -> Any:
    """``with running_server() as server:`` for code outside pytest fixtures."""
    server = DnsTestServer().start()
    try:
        yield server
    finally:
        server.stop()
