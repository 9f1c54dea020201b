"""The authenticity decision of SPEC §4.2 (``auth.mode = dmarc``) for one message.

Contract:

- ``DmarcAuthenticator(resolver, authserv_id=..., trusted_authserv_ids=...)`` is cheap, holds no
  per-message state and may be used from several threads at once.
- ``evaluate(raw, header_from=..., client_ip=..., helo=..., mail_from=...)`` is blocking
  (DNS, RSA): run it in a worker thread. ``header_from`` is the already strictly parsed,
  normalized From address. It returns an :class:`AuthVerdict` with ``dkim``, ``spf``,
  ``dmarc``, ``arc``, ``verdict`` (``pass``/``fail``), ``reason`` and ``results_header``.
- Verdict: ``pass`` iff DMARC passes — a DKIM pass whose ``d=`` is aligned with the From
  domain, or an SPF pass (connecting IP, envelope sender; HELO for a null sender) whose
  domain is aligned; ``adkim``/``aspf`` from the DMARC record, relaxed without one. A
  DMARC failure is ``fail`` whatever ``p=`` says (``none`` included) and also without any
  record: bccd requires authenticity. ``policy`` records ``p=`` (``sp=``) when published.
- Raises :class:`DnsTempError` only when a DNS failure could change the decision: a key
  of a signature aligned with From, SPF of an aligned envelope domain, or the DMARC record
  when only relaxed alignment made the message pass. An unrelated DNS failure (e.g. SPF
  while an aligned DKIM signature already passed) is merely recorded.
- ``build_authenticator(settings)`` → the ``Authenticator`` for ``auth.mode``: this
  class on the configured resolver (``dmarc``), or one that says ``skipped`` (``off``,
  logged as a warning). A bad ``dns`` section or authserv-id is a ``ConfigError``.
- ARC is verified and recorded; it never changes the verdict. Incoming
  ``Authentication-Results`` claiming our authserv-id are ignored; those of trusted
  authserv-ids are reported in ``extra["trusted_results"]`` (see :meth:`trusted_results`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from bccd.auth import dmarc as dmarc_mod
from bccd.auth.arc import verify_arc
from bccd.auth.dkim import MIN_KEY_BITS, SignatureResult, verify_message
from bccd.auth.dns import Resolver, configured_resolver
from bccd.auth.results import build_header
from bccd.auth.results import trusted_results as _trusted_results
from bccd.auth.spf import SpfResult, check_spf
from bccd.auth.verdict import SKIPPED, Authenticator, AuthVerdict, DnsTempError
from bccd.config import ConfigError, Settings
from bccd.log import get_logger

__all__ = ["DmarcAuthenticator", "build_authenticator"]

log = get_logger("bccd.serve")


def _fast_dkim_integers() -> None:
    """dkimpy converts between RSA integers and bytes one byte at a time in Python
    (``dkim.crypto.int2str``/``str2int``): about a fifth of a signature check. The same
    conversions with ``int.to_bytes``/``int.from_bytes`` (same results, byte for byte;
    ``tests/unit/auth/test_dkim_integers.py``). Skipped if dkimpy ever changes them."""
    import dkim.crypto as crypto

    if getattr(crypto.int2str, "__module__", "") != "dkim.crypto" \
            or getattr(crypto.str2int, "__module__", "") != "dkim.crypto":
        return

    def str2int(s: bytes | bytearray) -> int:
        return int.from_bytes(bytes(s), "big")

    def int2str(n: int, length: int = -1) -> bytes:
        assert n >= 0
        if length < 0:
            return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
        return (n & ((1 << (8 * length)) - 1)).to_bytes(length, "big")  # the low bytes, as dkimpy

    str2int.__module__ = int2str.__module__ = __name__
    crypto.str2int = str2int
    crypto.int2str = int2str


_fast_dkim_integers()


def _openssl_rsa_verify() -> None:
    """dkimpy checks an RSA signature with ``pow`` in Python
    (``dkim.crypto.RSASSA_PKCS1_v1_5_verify``): 134 µs for a 2048-bit key, almost half of
    the 285 µs a ``dkim.verify`` of a 4 KB message costs. The same check in OpenSSL through
    ``cryptography``, the key built once per (n, e) (at most 256 kept): 16 µs, and that
    ``dkim.verify`` 165 µs (timeit, best of 9, key memo of ``bccd.auth.dkim`` on; with the
    key parsed every time 315 → 200 µs). Same answers as dkimpy's
    (``tests/unit/auth/test_dkim_rsa.py``): dkimpy's own function still answers whatever
    OpenSSL would judge differently or refuse — a hash other than SHA-256/SHA-1, a modulus
    too short for the digest (dkimpy raises), a signature not exactly as long as the modulus
    or not below it (dkimpy reads it as an integer modulo n and may accept it), an even
    modulus, a public exponent over 64 bits, a modulus over 16384 bits, a key
    ``cryptography`` refuses (e < 3, even e, e ≥ n), any error of OpenSSL but a bad
    signature. Installed in ``dkim.crypto`` and in ``dkim`` (where ``verify_sig_process``
    finds it); skipped if dkimpy ever changes either. Ed25519 keys are not concerned."""
    import dkim
    import dkim.crypto as crypto
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    original: Callable[[Any, Any, Any], Any] = crypto.RSASSA_PKCS1_v1_5_verify
    if getattr(original, "__module__", "") != "dkim.crypto" \
            or getattr(dkim, "RSASSA_PKCS1_v1_5_verify", None) is not original:
        return

    # hash name -> (algorithm, digest size, shortest modulus in bytes dkimpy encodes it for:
    # DigestInfo, i.e. DER prefix and digest, plus 11 bytes of padding, as RFC 8017 §9.2)
    algorithms = {
        "sha256": (utils.Prehashed(hashes.SHA256()), 32, 19 + 32 + 11),
        "sha1": (utils.Prehashed(hashes.SHA1()), 20, 15 + 20 + 11),  # noqa: S303 - checks rsa-sha1, as dkimpy
    }
    pkcs1v15 = padding.PKCS1v15()

    @functools.lru_cache(maxsize=256)
    def openssl_key(n: int, e: int) -> tuple[rsa.RSAPublicKey, bytes] | None:
        """The key and its modulus as bytes; None for a key left to dkimpy."""
        if not n & 1 or n.bit_length() > 16384 or e.bit_length() > 64:
            return None
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except Exception:  # refused: ValueError, UnsupportedAlgorithm, OverflowError, ...
            return None
        return key, n.to_bytes((n.bit_length() + 7) // 8, "big")

    def verify(hash: Any, signature: Any, public_key: Any) -> bool:
        try:
            n, e = public_key["modulus"], public_key["publicExponent"]
            algorithm, size, shortest = algorithms[hash.name.lower()]
            digest = hash.digest()
            usable = type(n) is int and type(e) is int \
                and isinstance(signature, (bytes, bytearray)) and len(digest) == size
            cached = openssl_key(n, e) if usable else None
        except Exception:  # whatever dkimpy makes of it (it may raise)
            cached = None
        if cached is None:
            return bool(original(hash, signature, public_key))
        key, modulus = cached
        if len(signature) != len(modulus) or len(modulus) < shortest or signature >= modulus:
            return bool(original(hash, signature, public_key))
        try:
            key.verify(bytes(signature), digest, pkcs1v15, algorithm)
        except InvalidSignature:
            return False
        except Exception:  # not OpenSSL's verdict on the signature: dkimpy's
            return bool(original(hash, signature, public_key))
        return True

    verify.__module__ = __name__
    verify.bccd_original = original  # type: ignore[attr-defined]
    verify.bccd_cache = openssl_key  # type: ignore[attr-defined]
    crypto.RSASSA_PKCS1_v1_5_verify = verify
    dkim.RSASSA_PKCS1_v1_5_verify = verify


_openssl_rsa_verify()

# The overall dkim value when no signature passed: the most telling per-signature result.
_DKIM_PRECEDENCE = ("pass", "temperror", "fail", "permerror", "policy")


def _dkim_summary(signatures: Sequence[SignatureResult]) -> str:
    results = {s.result for s in signatures}
    for res in _DKIM_PRECEDENCE:
        if res in results:
            return res
    return "none"


def _describe(signatures: Sequence[SignatureResult]) -> str:
    if not signatures:
        return "no DKIM signature"
    parts = []
    for s in signatures:
        text = f"dkim {s.result} d={s.domain or '?'}"
        if s.reason:
            text += f" ({s.reason})"
        parts.append(text)
    return ", ".join(parts)


# What a refused sender is told about its DKIM signatures: fixed phrases keyed by the
# per-signature result and the start of our own reason text (never the sender's words).
_DKIM_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "policy": (
        ("signature does not cover From", "the DKIM signature does not cover From"),
        ("rsa-sha1", "rsa-sha1 DKIM signatures are not accepted"),
        ("key shorter", f"the DKIM key is shorter than {MIN_KEY_BITS} bits"),
        ("l= leaves", "the DKIM signature (l=) leaves part of the body unsigned"),
        ("", "the DKIM signature is not acceptable"),
    ),
    "fail": (
        ("body hash", "the DKIM body hash did not verify (body changed after signing)"),
        ("", "the DKIM signature did not verify (message changed after signing or wrong key)"),
    ),
    "permerror": (
        ("no key for signature", "no DKIM key is published for the signature"),
        ("", "the DKIM signature or its key is unusable"),
    ),
    "temperror": (("", "the DKIM key could not be looked up"),),
}


def _summary(from_domain: str, signatures: Sequence[SignatureResult], spf: SpfResult,
             record: dmarc_mod.DmarcRecord | None) -> str:
    """Why DMARC failed, in one short line for the SMTP reply (no sender-written text)."""
    adkim = record.adkim if record is not None else "r"
    aspf = record.aspf if record is not None else "r"
    passing = [s for s in signatures if s.passed]
    if not signatures:
        dkim = "no DKIM signature"
    elif passing:
        if adkim == "s" and any(dmarc_mod.aligned(s.domain, from_domain, "r") for s in passing):
            dkim = "the DKIM signature is not strictly aligned (DMARC adkim=s)"
        else:
            dkim = "the DKIM signature is from another domain"
    else:
        summary = _dkim_summary(signatures)
        first = next(s for s in signatures if s.result == summary)
        dkim = next(text for prefix, text in _DKIM_PHRASES.get(summary, (("", summary),))
                    if first.reason.startswith(prefix) or not prefix)
    if spf.result == "pass":
        if aspf == "s" and dmarc_mod.aligned(spf.domain, from_domain, "r"):
            spf_text = "SPF passed but is not strictly aligned (DMARC aspf=s)"
        else:
            spf_text = "SPF passed for another domain"
    elif spf.result in ("fail", "softfail", "neutral", "none", "permerror", "temperror"):
        spf_text = f"SPF {spf.result}"
    else:
        spf_text = "no SPF pass"
    return f"{dkim}; {spf_text}"


class DmarcAuthenticator:
    """Decides whether a message is authentic for its From domain (DMARC, SPEC §4.2)."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        authserv_id: str,
        trusted_authserv_ids: Sequence[str] = (),
    ) -> None:
        if not authserv_id.strip():
            raise ValueError("authserv_id must not be empty")
        self.resolver = resolver
        self.authserv_id = authserv_id.strip().lower()
        self.trusted_authserv_ids = tuple(t.strip().lower() for t in trusted_authserv_ids)

    def trusted_results(self, raw: bytes) -> list[Any]:
        """Incoming ``Authentication-Results`` from trusted relays (never our own id)."""
        if not set(self.trusted_authserv_ids) - {self.authserv_id}:
            return []  # nobody is trusted: no need to parse the header block for them
        return _trusted_results(raw, self.trusted_authserv_ids, self.authserv_id)

    def evaluate(
        self,
        raw: bytes,
        *,
        header_from: str,
        client_ip: str,
        helo: str,
        mail_from: str,
    ) -> AuthVerdict:
        from_domain = dmarc_mod.normalize_domain(header_from.rpartition("@")[2])

        signatures, header_names = verify_message(raw, self.resolver)
        passing = [s.domain for s in signatures if s.passed]

        record: dmarc_mod.DmarcRecord | None = None
        record_error: DnsTempError | None = None
        try:
            record = dmarc_mod.fetch_record(self.resolver, from_domain)
        except DnsTempError as exc:
            record_error = exc

        spf = check_spf(self.resolver, client_ip=client_ip, mail_from=mail_from, helo=helo,
                        receiver=self.authserv_id)

        def judge(adkim: str, aspf: str) -> dmarc_mod.DmarcEvaluation:
            return dmarc_mod.evaluate(from_domain, dkim_pass_domains=passing,
                                      spf_result=spf.result, spf_domain=spf.domain,
                                      adkim=adkim, aspf=aspf)

        if record is not None:
            outcome = judge(record.adkim, record.aspf)
        else:
            outcome = judge("r", "r")
            if outcome.result == "pass" and record_error is not None \
                    and judge("s", "s").result != "pass":
                # Passing only under relaxed alignment: the unknown record may say strict.
                raise DnsTempError(f"DMARC record for {from_domain}: {record_error}")

        if outcome.result != "pass":
            modes = (record.adkim, record.aspf) if record is not None else ("r", "r")
            self._raise_if_dns_mattered(from_domain, signatures, spf, *modes)

        arc = verify_arc(raw, self.resolver, header_names=header_names)
        policy = record.policy if record is not None else ""
        verdict = "pass" if outcome.result == "pass" else "fail"
        reason = self._reason(outcome, from_domain, signatures, spf, record)
        summary = "" if verdict == "pass" else _summary(from_domain, signatures, spf, record)

        extra: dict[str, Any] = {
            "dkim_signatures": [s.as_dict() for s in signatures],
            "spf_identity": spf.identity,
            "dmarc_record": record.domain if record is not None else "",
            "arc_reason": arc.reason,
        }
        if record_error is not None:
            extra["dmarc_record_error"] = str(record_error)
        trusted = self.trusted_results(raw)
        if trusted:
            extra["trusted_results"] = [str(h.header_value()) for h in trusted]

        header = build_header(
            self.authserv_id,
            signatures=signatures,
            spf=spf,
            helo=helo,
            mail_from=mail_from.strip().strip("<>"),
            dmarc=outcome.result,
            header_from_domain=from_domain,
            policy=policy,
            arc=arc.result,
        )
        return AuthVerdict(
            dkim=_dkim_summary(signatures),
            spf=spf.result,
            dmarc=outcome.result,
            arc=arc.result,
            dkim_domains=tuple(dict.fromkeys(passing)),
            spf_domain=spf.domain,
            header_from_domain=from_domain,
            policy=policy,
            verdict=verdict,
            reason=reason,
            summary=summary,
            results_header=header,
            extra=extra,
        )

    @staticmethod
    def _raise_if_dns_mattered(from_domain: str, signatures: Sequence[SignatureResult],
                               spf: SpfResult, adkim: str, aspf: str) -> None:
        """A failing decision is postponed when a DNS failure hid a possible aligned pass."""
        for s in signatures:
            if s.result == "temperror" and dmarc_mod.aligned(s.domain, from_domain, adkim):
                raise DnsTempError(f"DKIM key for d={s.domain}: {s.reason}")
        if spf.temporary and dmarc_mod.aligned(spf.domain, from_domain, aspf):
            raise DnsTempError(f"SPF for {spf.domain}: {spf.explanation}")

    @staticmethod
    def _reason(outcome: dmarc_mod.DmarcEvaluation, from_domain: str,
                signatures: Sequence[SignatureResult], spf: SpfResult,
                record: dmarc_mod.DmarcRecord | None) -> str:
        if outcome.dkim_domain:
            return f"DMARC pass: DKIM signature of {outcome.dkim_domain} aligned with {from_domain}"
        if outcome.result == "pass":
            return f"DMARC pass: SPF pass for {spf.domain} aligned with {from_domain}"
        policy = f"p={record.policy}" if record is not None else "no DMARC record"
        spf_text = f"spf {spf.result} for {spf.domain or '?'}"
        if spf.result == "pass":
            spf_text += " (not aligned)"
        dkim_text = _describe(signatures)
        if any(s.passed for s in signatures):
            dkim_text += " (no passing signature aligned)"
        return (f"DMARC fail for {from_domain} ({policy}): no aligned DKIM or SPF pass; "
                f"{dkim_text}; {spf_text}")


class Unchecked:
    """``auth.mode = off``: every message is ``skipped`` (development only)."""

    def evaluate(self, raw: bytes, *, header_from: str, client_ip: str, helo: str,
                 mail_from: str) -> AuthVerdict:
        return SKIPPED


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.auth.mode == "off":
        log.warning("auth_mode_off", detail="sender authenticity is NOT checked (auth.mode = off)")
        return Unchecked()
    resolver = configured_resolver(settings.dns)
    try:
        authenticator = DmarcAuthenticator(
            resolver,
            authserv_id=settings.authserv_id,
            trusted_authserv_ids=settings.auth.trusted_authserv_ids,
        )
    except ValueError as exc:
        raise ConfigError(f"auth.authserv_id: {exc}") from None
    log.info("auth_mode_dmarc", authserv_id=authenticator.authserv_id,
             nameservers=resolver.nameservers,
             resolver="configured" if settings.dns.nameservers else "system",
             port=resolver.port, timeout=resolver.timeout)
    return authenticator
