"""The one DNS resolver of the authenticity layer (SPEC §4.2).

Contract:

- ``Resolver(nameservers, port, timeout)`` asks only the configured nameservers (``[]``:
  the system resolver from ``/etc/resolv.conf``; :class:`ResolverConfigError` when that
  file is missing or names no nameserver) with dnspython; ``timeout`` bounds each
  lookup as a whole (all tries, UDP and the TCP retry of a truncated answer).
- Answers are kept in a thread-safe, size-bounded LRU cache for at most their TTL
  (dnspython's ``LRUCache``); negative answers (NXDOMAIN) are cached the same way. In
  front of it, positive answers are also kept as ready record lists in a plain dict
  (same expiry, same bound): a hit then costs a dict lookup instead of a resolver call —
  every message asks for the same key, DMARC and SPF records.
- NXDOMAIN, NODATA and names that cannot exist (a label over 63 octets, an empty label)
  give an empty list.
- A timeout, SERVFAIL/REFUSED from every server or any other failure to get an answer
  raises :class:`~bccd.auth.verdict.DnsTempError`: the caller decides whether it matters.
- Everything here is blocking and meant to run in a worker thread; one instance may be
  shared by many threads.
- ``configured_resolver(dns_settings)`` is the resolver ``[dns]`` configures, or a
  ``ConfigError`` naming ``dns.nameservers``; ``check(settings)`` runs it when the
  authenticity checks need DNS, so ``bccd serve`` refuses such settings before it
  listens (SPEC §10), without loading the checks themselves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype
import dns.resolver

from bccd.auth.verdict import DnsTempError
from bccd.config import ConfigError

if TYPE_CHECKING:
    from bccd.config import DnsSettings, Settings

__all__ = ["DEFAULT_CACHE_SIZE", "Resolver", "ResolverConfigError", "check",
           "configured_resolver"]

DEFAULT_CACHE_SIZE = 10_000

_INVALID_NAME = (
    dns.name.LabelTooLong,
    dns.name.NameTooLong,
    dns.name.EmptyLabel,
    dns.name.BadEscape,
    dns.name.IDNAException,
    dns.exception.SyntaxError,
    UnicodeError,
)


class ResolverConfigError(ValueError):
    """Neither ``dns.nameservers`` nor a usable system resolver (``/etc/resolv.conf``)."""


def configured_resolver(dns_settings: DnsSettings) -> Resolver:
    """The resolver ``[dns]`` configures; ``ConfigError`` naming ``dns.nameservers`` when
    there is none (no nameservers configured and no usable system resolver)."""
    try:
        return Resolver.from_settings(dns_settings)
    except ResolverConfigError as exc:
        raise ConfigError(f"dns.nameservers: {exc}") from None


def check(settings: Settings) -> None:
    """``ConfigError`` when the authenticity checks (``auth.mode`` other than ``off``)
    would have no resolver."""
    if settings.auth.mode != "off":
        configured_resolver(settings.dns)


class Resolver:
    """Blocking, cached lookups through the configured nameservers."""

    def __init__(
        self,
        nameservers: list[str],
        port: int = 53,
        timeout: float = 5.0,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        try:
            resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ResolverConfigError(
                f"no nameservers configured and the system resolver is unusable ({exc}); "
                'set dns.nameservers = ["<IP of a resolver>"]'
            ) from None
        if nameservers:
            resolver.nameservers = list(nameservers)
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.retry_servfail = False
        resolver.cache = dns.resolver.LRUCache(cache_size)
        self._resolver = resolver
        self._ready: dict[tuple[str, str], tuple[float, list[dns.rdata.Rdata]]] = {}
        self._cache_size = cache_size
        self.nameservers = [str(ns) for ns in resolver.nameservers]
        self.port = port
        self.timeout = timeout

    @classmethod
    def from_settings(cls, dns_settings: DnsSettings) -> Resolver:
        return cls(list(dns_settings.nameservers), dns_settings.port, dns_settings.timeout)

    def __repr__(self) -> str:
        return (f"Resolver(nameservers={self.nameservers!r}, port={self.port}, "
                f"timeout={self.timeout})")

    def flush(self) -> None:
        """Forget every cached answer."""
        self._ready.clear()
        cache = self._resolver.cache
        if cache is not None:
            cache.flush()

    # -- lookups -------------------------------------------------------------------------

    def lookup(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """The records of ``rdtype`` at ``name`` (CNAMEs followed); ``[]`` for none."""
        key = (name, rdtype)
        hit = self._ready.get(key)
        if hit is not None and time.time() < hit[0]:
            return list(hit[1])
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".")
        except _INVALID_NAME:
            return []
        try:
            answer = self._resolver.resolve(
                qname, dns.rdatatype.from_text(rdtype), search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return []
        except dns.exception.Timeout as exc:
            raise DnsTempError(f"DNS timeout looking up {name} {rdtype}") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(f"DNS server failure looking up {name} {rdtype}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"DNS error looking up {name} {rdtype}: {exc}") from exc
        if answer.rrset is None:
            return []
        records = list(answer.rrset)
        if len(self._ready) >= self._cache_size:
            self._ready.clear()  # crude bound; the resolver's own LRU cache remains
        self._ready[key] = (answer.expiration, records)
        return list(records)

    def txt_strings(self, name: str) -> list[tuple[bytes, ...]]:
        """Each TXT record at ``name`` as its character-strings."""
        return [tuple(rd.strings) for rd in self.lookup(name, "TXT")]  # type: ignore[attr-defined]

    def txt(self, name: str) -> list[bytes]:
        """Each TXT record at ``name``, its character-strings concatenated (RFC 6376/7208)."""
        return [b"".join(strings) for strings in self.txt_strings(name)]

    def spf_type(self, name: str) -> list[tuple[bytes, ...]]:
        """Records of the obsolete SPF type (99), as character-strings."""
        return [tuple(rd.strings) for rd in self.lookup(name, "SPF")]  # type: ignore[attr-defined]

    def a(self, name: str) -> list[str]:
        return [rd.address for rd in self.lookup(name, "A")]  # type: ignore[attr-defined]

    def aaaa(self, name: str) -> list[str]:
        return [rd.address for rd in self.lookup(name, "AAAA")]  # type: ignore[attr-defined]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; the exchange without its final dot."""
        return [
            (int(rd.preference), rd.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
            for rd in self.lookup(name, "MX")
        ]

    def ptr(self, name: str) -> list[str]:
        return [
            rd.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            for rd in self.lookup(name, "PTR")
        ]
