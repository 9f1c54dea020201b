"""DKIM (RFC 6376, RFC 8463) verification of every signature with dkimpy.

Contract:

- :func:`verify_signatures` verifies each ``DKIM-Signature`` (the topmost
  :data:`MAX_SIGNATURES`) with ``dkim.DKIM(raw).verify(idx=i, dnsfunc=...)`` — not
  ``dkim.verify()``, which checks only the first one — and returns one
  :class:`SignatureResult` per signature, in header order.
- Results (RFC 8601 ``dkim`` values): ``pass``; ``fail`` (bad signature or body hash);
  ``permerror`` (malformed signature, missing or unusable key); ``temperror`` (DNS could not
  answer for the key); ``policy`` (cryptographically fine but ignored by our rules: ``h=``
  does not cover From, an RSA key under :data:`MIN_KEY_BITS`, ``l=`` leaving body content
  unsigned, ``rsa-sha1`` per RFC 8301).
- Keys are fetched through :class:`~bccd.auth.dns.Resolver`; a DNS failure surfaces as
  ``temperror`` for that signature (our ``dnsfunc`` raises ``DnsTempError``, which dkimpy
  does not swallow) — never as an exception from here.
- RSA and ed25519 verification is CPU work: call from a worker thread.
- :func:`verify_message` does the same and also returns the header field names dkimpy
  read (``None`` when it could not read the message), so that ARC need not read the
  message again to learn that it carries no ARC set (see ``arc.verify_arc``).
- A published key is parsed once per distinct TXT record (dkimpy's ``evaluate_pk`` is a
  pure function of the record; a changed record is a new key, parsed anew).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy
from dkim.canonicalization import CanonicalizationPolicy

from bccd.auth.dns import Resolver
from bccd.auth.verdict import DnsTempError

__all__ = [
    "MAX_SIGNATURES",
    "MIN_KEY_BITS",
    "SignatureResult",
    "make_dnsfunc",
    "verify_message",
    "verify_signatures",
]

MAX_SIGNATURES = 5
MIN_KEY_BITS = 1024


@dataclass(frozen=True, slots=True)
class SignatureResult:
    result: str            # pass | fail | permerror | temperror | policy
    domain: str            # d=, lowercase ("" when unparsable)
    selector: str = ""     # s=
    algorithm: str = ""    # a=
    reason: str = ""       # why it is not a pass

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    def as_dict(self) -> dict[str, str]:
        return {"result": self.result, "d": self.domain, "s": self.selector,
                "a": self.algorithm, "reason": self.reason}


DnsFunc = Callable[..., bytes | None]


def make_dnsfunc(resolver: Resolver) -> DnsFunc:
    """dkimpy's ``dnsfunc(name, timeout=...)``: the first TXT record, ``None`` if none.

    Raises :class:`DnsTempError` (deliberately not a ``DKIMException``) when DNS fails.
    """

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        if isinstance(name, bytes):
            try:
                name = name.decode("ascii")
            except UnicodeDecodeError:
                return None
        records = resolver.txt(name)
        return records[0] if records else None

    return dnsfunc


class _CapturingLogger:
    """Collects the errors dkimpy logs instead of raising (e.g. a missing key)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = warning = debug

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.errors.append(str(msg))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value or "")


def _domain(value: Any) -> str:
    return _text(value).strip().rstrip(".").lower()


def _signature_count(d: dkimpy.DKIM) -> int:
    return sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")


def _verify_one(d: dkimpy.DKIM, idx: int, dnsfunc: DnsFunc, log: _CapturingLogger,
                accept_rsa_sha1: bool) -> SignatureResult:
    log.errors.clear()
    d.signature_fields = {}
    try:
        prep = d.verify_headerprep(idx)
    except dkimpy.DKIMException as exc:
        fields = d.signature_fields or {}
        return SignatureResult("permerror", _domain(fields.get(b"d")), _text(fields.get(b"s")),
                               _text(fields.get(b"a")), f"malformed signature: {exc}")
    sig, include_headers, sigheaders = prep
    domain, selector, algorithm = _domain(sig[b"d"]), _text(sig[b"s"]), _text(sig[b"a"])

    def result(res: str, reason: str = "") -> SignatureResult:
        return SignatureResult(res, domain, selector, algorithm, reason)

    if b"from" not in include_headers:
        return result("policy", "signature does not cover From (h=)")
    if sig[b"a"] == b"rsa-sha1" and not accept_rsa_sha1:
        return result("policy", "rsa-sha1 signatures are not accepted (RFC 8301)")
    try:
        # DKIM.verify(idx) is verify_headerprep(idx) — done above — then verify_sig
        ok = d.verify_sig(sig, include_headers, sigheaders[idx], dnsfunc)
    except DnsTempError as exc:
        return result("temperror", f"key lookup failed: {exc}")
    except dkimpy.KeyFormatError as exc:
        if "too small" in str(exc):
            return result("policy", f"key shorter than {MIN_KEY_BITS} bits")
        return result("permerror", f"unusable key: {exc}")
    except dkimpy.ValidationError as exc:
        if "body hash" in str(exc):
            return result("fail", "body hash did not verify")
        return result("permerror", f"invalid signature: {exc}")
    except dkimpy.DKIMException as exc:
        return result("permerror", f"invalid signature: {exc}")
    if not ok:
        if log.errors:
            err = log.errors[-1]
            if err.startswith("missing public key"):
                return result("permerror", "no key for signature")
            return result("permerror", f"unusable key: {err}")
        return result("fail", "signature did not verify")
    if b"l" in sig:
        canon = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        if len(canon.canonicalize_body(d.body)) > int(sig[b"l"]):
            return result("policy", "l= leaves part of the body unsigned")
    return result("pass")


def verify_signatures(raw: bytes, resolver: Resolver, *,
                      accept_rsa_sha1: bool = False) -> list[SignatureResult]:
    """Verify every DKIM signature of ``raw`` (the topmost :data:`MAX_SIGNATURES`).

    ``accept_rsa_sha1`` exists for interoperability tests with signers that only produce
    ``rsa-sha1``; bccd itself never sets it (RFC 8301).
    """
    return verify_message(raw, resolver, accept_rsa_sha1=accept_rsa_sha1)[0]


def verify_message(raw: bytes, resolver: Resolver, *, accept_rsa_sha1: bool = False,
                   ) -> tuple[list[SignatureResult], list[bytes] | None]:
    """``verify_signatures`` and the message's header field names as dkimpy read them
    (``None``: dkimpy could not read the message)."""
    log = _CapturingLogger()
    try:
        d = dkimpy.DKIM(raw, logger=log, minkey=MIN_KEY_BITS)
    except dkimpy.DKIMException as exc:
        if b"dkim-signature" in raw.lower():
            return [SignatureResult("permerror", "", reason=f"unparsable message: {exc}")], None
        return [], None
    names = [name for name, _ in d.headers]
    dnsfunc = make_dnsfunc(resolver)
    count = min(_signature_count(d), MAX_SIGNATURES)
    return [_verify_one(d, idx, dnsfunc, log, accept_rsa_sha1) for idx in range(count)], names


def _parse_each_key_once() -> None:
    """dkimpy parses the key record (tag list, base64, ASN.1) for every signature it checks,
    and every message of a sender is signed with the same key: ``dkim.evaluate_pk(name,
    record)`` — a pure function of its arguments, its results only read — is memoized
    (``tests/unit/auth/test_dkim_keys.py``). A record that fails to parse raises, and is
    never kept. Skipped if dkimpy ever changes it."""
    original = getattr(dkimpy, "evaluate_pk", None)
    if original is None or getattr(original, "__module__", "") != "dkim":
        return
    cached = functools.lru_cache(maxsize=1024)(original)

    def evaluate_pk(name: Any, s: Any) -> Any:
        try:
            return cached(name, s)
        except TypeError:  # an unhashable argument: as dkimpy would
            return original(name, s)

    evaluate_pk.__module__ = __name__
    evaluate_pk.bccd_cache = cached  # type: ignore[attr-defined]
    dkimpy.evaluate_pk = evaluate_pk


_parse_each_key_once()
