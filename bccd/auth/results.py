"""RFC 8601 ``Authentication-Results``: building ours, reading incoming ones (``authres``).

Contract:

- :func:`build_header` returns the header *value* (no field name) for our verdict, made
  with ``authres`` objects — never hand-formatted: one ``dkim`` clause per evaluated
  signature (``dkim=none`` without any), ``spf``, ``dmarc`` (with ``policy.dmarc``) and
  ``arc``. Values the sender controls (HELO, envelope sender, signature tags, reasons) are
  only included when they cannot break the header's syntax, so they cannot forge results.
- :func:`incoming_results` parses every ``Authentication-Results`` field of a message;
  unparsable ones are skipped. :func:`trusted_results` keeps those whose authserv-id is in
  the trusted list and never one claiming our own authserv-id (a forger can write any
  header; only a trusted relay's are believed, and ours come from us alone).
- :func:`provider_dmarc_pass` is a mailbox provider's own word on a synced message (SPEC
  §7): whether the *topmost* ``Authentication-Results`` field comes from one of the
  account's authserv-ids and says ``dmarc=pass`` for the From domain. A provider adds its
  field at delivery, above every header it received, and (RFC 8601 §5) removes or renames
  fields claiming its own id; so only the topmost field can be its own, and a sender's
  forged copy of it further down is never read.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Iterable, Sequence
from typing import Any

import authres
import authres.arc
import authres.dmarc

from bccd.addresses import AddressError, normalize_domain
from bccd.auth.dkim import SignatureResult
from bccd.auth.spf import SpfResult

__all__ = ["FEATURES", "build_header", "incoming_results", "provider_dmarc_pass",
           "trusted_results"]

FEATURES = authres.FeatureContext(authres.dmarc, authres.arc)

_FOLD = re.compile(r"\r?\n(?=[ \t])")
# authres prints a property value holding "@" unquoted, so a HELO such as
# "a@b; dmarc=pass" would forge a result: such values must be plain addresses; others are
# quoted by authres but must be printable ASCII. Anything else is left out (an envelope
# sender then falls back to its domain).
_ADDRESS_PVALUE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,255}")
_PRINTABLE_PVALUE = re.compile(r"[\x21-\x7e]{1,255}")
_UNSAFE_REASON = re.compile(r"[^\x20-\x7e]|@")


def _pvalue(value: str | None) -> str | None:
    """``value`` if authres prints it safely (quoted when needed), else ``None``."""
    if not value:
        return None
    if "@" in value:
        return value if _ADDRESS_PVALUE.fullmatch(value) else None
    return value if _PRINTABLE_PVALUE.fullmatch(value) else None


def _reason(text: str) -> str | None:
    """A reason authres will always quote correctly (no "@", printable ASCII only)."""
    return _UNSAFE_REASON.sub("?", text)[:200] or None


def build_header(
    authserv_id: str,
    *,
    signatures: Sequence[SignatureResult],
    spf: SpfResult | None,
    helo: str,
    mail_from: str,
    dmarc: str,
    header_from_domain: str,
    policy: str,
    arc: str,
) -> str:
    results: list[Any] = []
    for sig in signatures:
        results.append(authres.DKIMAuthenticationResult(
            result=sig.result,
            reason=_reason(sig.reason),
            header_d=_pvalue(sig.domain),
            header_s=_pvalue(sig.selector),
            header_a=_pvalue(sig.algorithm),
        ))
    if not signatures:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    if spf is not None:
        if spf.identity == "helo":
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_helo=_pvalue(helo) or _pvalue(spf.domain)))
        else:
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_mailfrom=_pvalue(mail_from) or _pvalue(spf.domain)))
    results.append(authres.dmarc.DMARCAuthenticationResult(
        result=dmarc, header_from=_pvalue(header_from_domain), policy=_pvalue(policy)))
    results.append(authres.arc.ARCAuthenticationResult(result=arc))
    header = FEATURES.header(authserv_id=authserv_id, results=results)
    return str(header.header_value())


def _field_values(raw: bytes) -> list[str]:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    msg = parser.parsebytes(raw, headersonly=True)
    values = msg.get_all("Authentication-Results") or []
    return [_FOLD.sub("", str(v)) for v in values]


def incoming_results(raw: bytes) -> list[Any]:
    """Every parsable ``Authentication-Results`` field, as ``authres`` header objects."""
    parsed: list[Any] = []
    for value in _field_values(raw):
        try:
            parsed.append(FEATURES.parse_value(value))
        except (authres.AuthResError, ValueError, IndexError):
            continue
    return parsed


def trusted_results(raw: bytes, trusted_ids: Iterable[str], own_id: str) -> list[Any]:
    """Incoming results from trusted authserv-ids; any claiming ``own_id`` is dropped."""
    own = own_id.strip().lower()
    trusted = {t.strip().lower() for t in trusted_ids} - {own}
    return [h for h in incoming_results(raw) if h.authserv_id in trusted]


def provider_dmarc_pass(raw: bytes, provider_ids: Iterable[str], from_domain: str) -> bool:
    """The topmost ``Authentication-Results`` field is from one of ``provider_ids`` and
    says DMARC passed for ``from_domain`` (compared as normalized domains)."""
    trusted = {t.strip().lower() for t in provider_ids if t.strip()}
    values = _field_values(raw)[:1] if trusted else []
    for value in values:
        try:  # not parsable (e.g. a U-label, which authres does not read): no verdict
            header = FEATURES.parse_value(value)
        except (authres.AuthResError, ValueError, IndexError):
            return False
        if str(header.authserv_id).lower() not in trusted:
            return False
        for result in header.results:
            if result.method != "dmarc" or str(result.result).lower() != "pass":
                continue
            claimed = getattr(result, "header_from", None)
            try:
                if claimed and normalize_domain(str(claimed)) == normalize_domain(from_domain):
                    return True
            except AddressError:
                continue
    return False
