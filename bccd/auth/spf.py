"""SPF (RFC 7208) for the connecting IP with pyspf, resolved through our :class:`Resolver`.

Contract:

- :func:`check_spf` evaluates the envelope sender's domain for ``client_ip``; with a null
  sender (``""`` or ``"<>"``) the HELO identity is checked instead (RFC 7208 §2.3/§2.4).
  It never raises for DNS trouble: a DNS failure is the SPF result ``temperror`` and the
  caller decides whether it matters (see ``authenticator``).
- pyspf resolves through the module-level hook ``spf.DNSLookup``. It is wrapped once, at
  import; the wrapper uses the :class:`Resolver` made active for the current call with a
  ``ContextVar`` (so threads and several authenticators with different resolvers do not
  mix). Outside such a call the wrapper refuses to resolve (``TempError``): nothing in this
  process reaches the network through pyspf except via a configured resolver.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import spf as pyspf

from bccd.auth.dns import Resolver
from bccd.auth.verdict import DnsTempError

__all__ = ["SpfResult", "check_spf", "install_dns_hook"]

_ACTIVE: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar(
    "bccd_spf_resolver", default=None
)


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str          # pass | fail | softfail | neutral | none | temperror | permerror
    domain: str          # the domain checked: envelope sender's, or HELO's for a null sender
    identity: str        # "mailfrom" | "helo"
    explanation: str = ""

    @property
    def temporary(self) -> bool:
        return self.result == "temperror"


def _lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    """pyspf's ``DNSLookup`` contract: ``[((name, qtype), data), ...]``."""
    resolver = _ACTIVE.get()
    if resolver is None:
        raise pyspf.TempError("DNS: no bccd resolver active for this SPF check")
    key = (name, qtype)
    try:
        if qtype == "TXT":
            return [(key, strings) for strings in resolver.txt_strings(name)]
        if qtype == "SPF":
            return [(key, strings) for strings in resolver.spf_type(name)]
        if qtype == "A":
            return [(key, a) for a in resolver.a(name)]
        if qtype == "AAAA":
            return [(key, a) for a in resolver.aaaa(name)]
        if qtype == "MX":
            return [(key, mx) for mx in resolver.mx(name)]
        if qtype == "PTR":
            return [(key, p) for p in resolver.ptr(name)]
    except DnsTempError as exc:
        raise pyspf.TempError(f"DNS {exc}") from exc
    raise pyspf.TempError(f"DNS: unsupported query type {qtype}")


_lookup.bccd_hook = True  # type: ignore[attr-defined]


def install_dns_hook() -> None:
    """Route pyspf's DNS through the active :class:`Resolver` (idempotent)."""
    if not getattr(pyspf.DNSLookup, "bccd_hook", False):
        pyspf.DNSLookup = _lookup


install_dns_hook()


def _normalize_sender(mail_from: str) -> str:
    sender = mail_from.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1].strip()
    return sender


def check_spf(
    resolver: Resolver,
    *,
    client_ip: str,
    mail_from: str,
    helo: str,
    receiver: str = "",
    default_explanation: str | None = None,
) -> SpfResult:
    """The SPF result for ``client_ip`` sending as ``mail_from`` (HELO for a null sender)."""
    sender = _normalize_sender(mail_from)
    helo = helo.strip()
    if not sender and not helo:
        return SpfResult("none", "", "helo", "no identity to check")
    token = _ACTIVE.set(resolver)
    try:
        try:
            query = pyspf.query(i=client_ip, s=sender, h=helo, receiver=receiver or None)
        except ValueError as exc:  # not an IP address
            return SpfResult("permerror", "", "mailfrom" if sender else "helo", str(exc))
        if default_explanation is not None:
            query.set_default_explanation(default_explanation)
        result, _code, explanation = query.check()
    finally:
        _ACTIVE.reset(token)
    result = {"unknown": "permerror", "error": "temperror"}.get(result, result)
    return SpfResult(
        result=str(result),
        domain=str(query.o or "").lower().rstrip("."),
        identity=str(query.ident),
        explanation=str(explanation or ""),
    )
