"""The authenticity verdict one message gets (SPEC §4.2), stored with the message."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol


class DnsTempError(Exception):
    """DNS could not answer (timeout, SERVFAIL, no nameserver): the decision is postponed.

    Deliberately *not* a ``dkim.DKIMException``, so dkimpy does not swallow it as a failed
    signature.
    """


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    dkim: str = "none"            # pass | fail | none | temperror | permerror | policy
    spf: str = "none"             # pass | fail | softfail | neutral | none | temperror | permerror
    dmarc: str = "none"           # pass | fail | none
    arc: str = "none"             # pass | fail | none | temperror (recorded, not a policy input)
    dkim_domains: tuple[str, ...] = ()   # d= of the passing signatures
    spf_domain: str = ""
    header_from_domain: str = ""
    policy: str = ""              # p= of the DMARC record, when there is one
    verdict: str = "none"         # pass | fail | skipped (auth.mode = off)
    reason: str = ""              # the full reason, for logs and the rejections list
    summary: str = ""             # one short line for the SMTP reply (fixed phrases only)
    results_header: str = ""      # RFC 8601 Authentication-Results value
    extra: dict[str, Any] = field(default_factory=dict)
    # an original recovered from a forward (verdict "forwarded"): the forwarding's own
    # verdict (``as_dict`` of it) and ``by``, the forwarder's address (SPEC §4.3)
    forwarding: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.verdict in ("pass", "skipped")

    def forwarded_by(self, forwarder: str) -> AuthVerdict:
        """The verdict of an original recovered from a copy with this verdict that
        ``forwarder`` sent (SPEC §4.3): none of its own — who forwarded it was checked,
        not who wrote it; this verdict is kept as the forwarding's."""
        outer = {k: v for k, v in self.as_dict().items() if k != "forwarding"}
        return AuthVerdict(verdict="forwarded", summary="forwarded",
                           reason=f"recovered from a message forwarded by {forwarder}",
                           forwarding={**outer, "by": forwarder})

    def as_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict`` (a deep copy) with ``dkim_domains`` as a list. A verdict
        holds plain values only (text, lists and dicts of text): those are copied directly,
        without asdict's generic walk (it runs for every message filed); anything else takes
        asdict itself."""
        try:
            d = {name: _plain(getattr(self, name)) for name in _FIELDS}
        except _NotPlain:
            d = asdict(self)
        d["dkim_domains"] = list(self.dkim_domains)
        return d


class _NotPlain(Exception):
    pass


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """What ``asdict`` makes of ``value`` when it is a plain value; else ``_NotPlain``."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(_plain(v) for v in value)
    raise _NotPlain


_FIELDS = tuple(f.name for f in fields(AuthVerdict))


SKIPPED = AuthVerdict(verdict="skipped", reason="auth.mode = off")


class Authenticator(Protocol):
    """What ingest asks about a message's authenticity (SPEC §4.2): blocking (DNS, RSA) —
    run it in a worker thread; ``header_from`` is the strictly parsed From address."""

    def evaluate(self, raw: bytes, *, header_from: str, client_ip: str, helo: str,
                 mail_from: str) -> AuthVerdict: ...
