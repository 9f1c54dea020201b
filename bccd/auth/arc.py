"""ARC (RFC 8617) chain validation with dkimpy's ``arc_verify`` — recorded, not a policy input.

Contract:

- :func:`verify_arc` returns the chain validation status ``pass``, ``fail`` or ``none``
  (no ARC sets), or ``temperror`` when DNS could not answer for a key. It never raises:
  ARC must not be able to refuse or postpone a message.
- A chain that an ARC-Seal already reported as ``cv=fail`` is ``fail`` (dkimpy reports
  "terminated" as ``None``). Keys come from our :class:`Resolver`; RSA keys under 1024
  bits are refused like for DKIM.
- ``header_names``: the message's header field names as dkimpy already read them (DKIM
  verification, ``dkim.verify_message``). Without any ARC header field among them the
  chain is ``none`` — dkimpy's own answer for such a message ("Message is not ARC
  signed") — without reading the message a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dkim as dkimpy

from bccd.auth.dkim import MIN_KEY_BITS, make_dnsfunc
from bccd.auth.dns import Resolver
from bccd.auth.verdict import DnsTempError

__all__ = ["NOT_SIGNED", "ArcResult", "verify_arc"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str     # pass | fail | none | temperror
    reason: str = ""


_CV = {b"pass": "pass", b"fail": "fail", b"none": "none"}


_ARC_FIELDS = frozenset(name.lower() for name in dkimpy.ARC.ARC_HEADERS)
NOT_SIGNED = ArcResult("none", "Message is not ARC signed")


def verify_arc(raw: bytes, resolver: Resolver, *,
               header_names: Sequence[bytes] | None = None) -> ArcResult:
    """Validate the ARC chain of ``raw``."""
    if header_names is not None and not any(n.lower() in _ARC_FIELDS for n in header_names):
        return NOT_SIGNED
    try:
        cv, _sets, reason = dkimpy.arc_verify(raw, dnsfunc=make_dnsfunc(resolver),
                                              minkey=MIN_KEY_BITS)
    except DnsTempError as exc:
        return ArcResult("temperror", str(exc))
    except Exception as exc:  # dkimpy on hostile input: ARC is informational only
        return ArcResult("fail", f"ARC validation error: {type(exc).__name__}: {exc}")
    if cv is None:
        return ArcResult("fail", str(reason))
    return ArcResult(_CV.get(cv, "fail"), str(reason))
