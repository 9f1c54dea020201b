"""ARC (RFC 8617) chain validation with dkimpy's ``arc_verify`` — recorded, not a policy input.

Contract:

- :func:`verify_arc` returns the chain validation status ``pass``, ``fail`` or ``none``
  (no ARC sets), or ``temperror`` when DNS could not answer for a key. It never raises:
  ARC must not be able to refuse or postpone a message.
- A chain that an ARC-Seal already reported as ``cv=fail`` is ``fail`` (dkimpy reports
  "terminated" as ``None``). Keys come from our :class:`Resolver`; RSA keys under 1024
  bits are refused like for DKIM.
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim as dkimpy

from bccd.auth.dkim import MIN_KEY_BITS, make_dnsfunc
from bccd.auth.dns import Resolver
from bccd.auth.verdict import DnsTempError

__all__ = ["ArcResult", "verify_arc"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str     # pass | fail | none | temperror
    reason: str = ""


_CV = {b"pass": "pass", b"fail": "fail", b"none": "none"}


def verify_arc(raw: bytes, resolver: Resolver) -> ArcResult:
    """Validate the ARC chain of ``raw``."""
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
