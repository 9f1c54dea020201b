"""DMARC (RFC 7489) record discovery, organizational domains and identifier alignment.

Contract:

- :func:`organizational_domain` uses the Public Suffix List shipped in the
  ``publicsuffixlist`` package, default rule included: an unlisted TLD such as ``.test``
  is itself a public suffix, so ``mail.corp.test`` belongs to ``corp.test``.
- :func:`fetch_record` looks up ``_dmarc.<from-domain>`` and, when that has no usable
  record, ``_dmarc.<organizational domain>`` (RFC 7489 §6.6.3); ``None`` when neither has
  exactly one ``v=DMARC1`` record. Tags are parsed with dkimpy's tag-list parser (DMARC
  uses the DKIM tag-value syntax). DNS failures raise ``DnsTempError``.
- :func:`aligned` implements relaxed (same organizational domain) and strict (identical)
  alignment; :func:`evaluate` says whether an aligned DKIM ``d=`` or SPF domain passed.
  Under bccd's policy the ``p=`` value never turns a failure into an acceptance: it is only
  recorded (see ``authenticator``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import idna
from dkim.util import InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from bccd.auth.dns import Resolver

__all__ = [
    "DmarcEvaluation",
    "DmarcRecord",
    "aligned",
    "evaluate",
    "fetch_record",
    "normalize_domain",
    "organizational_domain",
]

_PSL: PublicSuffixList | None = None
_PSL_LOCK = threading.Lock()
_POLICIES = ("none", "quarantine", "reject")


def _psl() -> PublicSuffixList:
    global _PSL
    with _PSL_LOCK:
        if _PSL is None:
            _PSL = PublicSuffixList()
        return _PSL


def normalize_domain(domain: str) -> str:
    """Lowercase A-label form without the final dot (U-labels converted with UTS #46)."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            return domain
    return domain


def organizational_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 §3.2) of ``domain``."""
    domain = normalize_domain(domain)
    org = _psl().privatesuffix(domain)
    return str(org) if org else domain


def aligned(identifier: str, from_domain: str, mode: str = "r") -> bool:
    """Identifier alignment: ``s`` strict (identical), otherwise relaxed (same org domain)."""
    a, b = normalize_domain(identifier), normalize_domain(from_domain)
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    domain: str        # where the record was found
    policy: str        # the policy that applies to the From domain (p=, or sp= from the org)
    adkim: str = "r"
    aspf: str = "r"
    raw: str = ""


@dataclass(frozen=True, slots=True)
class DmarcEvaluation:
    result: str                        # pass | fail
    dkim_domain: str = ""              # the aligned passing d=, if any
    spf_aligned: bool = False


def _parse(raw: bytes, found_at: str, from_domain: str) -> DmarcRecord | None:
    try:
        tags: dict[bytes, bytes] = parse_tag_value(raw)
    except InvalidTagValueList:
        return None
    if tags.get(b"v") != b"DMARC1":
        return None

    def tag(name: bytes, default: str) -> str:
        value: bytes = tags.get(name, default.encode())
        return value.decode("ascii", "replace").strip().lower()

    policy = tag(b"p", "none")
    if found_at != from_domain:
        policy = tag(b"sp", policy)
    if policy not in _POLICIES:
        policy = "none"  # RFC 7489 §6.6.3: an invalid p= is treated as none
    adkim, aspf = tag(b"adkim", "r"), tag(b"aspf", "r")
    return DmarcRecord(
        domain=found_at,
        policy=policy,
        adkim="s" if adkim == "s" else "r",
        aspf="s" if aspf == "s" else "r",
        raw=raw.decode("ascii", "replace"),
    )


def _record_at(resolver: Resolver, domain: str, from_domain: str) -> DmarcRecord | None:
    candidates = [txt for txt in resolver.txt(f"_dmarc.{domain}")
                  if txt.lstrip().startswith(b"v=DMARC1")]
    if len(candidates) != 1:
        return None
    return _parse(candidates[0], domain, from_domain)


def fetch_record(resolver: Resolver, from_domain: str) -> DmarcRecord | None:
    """The DMARC record governing ``from_domain``; raises ``DnsTempError`` on DNS failure."""
    from_domain = normalize_domain(from_domain)
    record = _record_at(resolver, from_domain, from_domain)
    if record is not None:
        return record
    org = organizational_domain(from_domain)
    if org != from_domain:
        return _record_at(resolver, org, from_domain)
    return None


def evaluate(
    from_domain: str,
    *,
    dkim_pass_domains: Iterable[str],
    spf_result: str,
    spf_domain: str,
    adkim: str = "r",
    aspf: str = "r",
) -> DmarcEvaluation:
    """DMARC pass = an aligned DKIM pass or an aligned SPF pass."""
    for d in dkim_pass_domains:
        if aligned(d, from_domain, adkim):
            spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, aspf)
            return DmarcEvaluation("pass", dkim_domain=d, spf_aligned=spf_ok)
    if spf_result == "pass" and aligned(spf_domain, from_domain, aspf):
        return DmarcEvaluation("pass", spf_aligned=True)
    return DmarcEvaluation("fail")
