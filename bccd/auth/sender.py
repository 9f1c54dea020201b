"""Strict From parsing and the sender rule (SPEC §4.1).

``parse_from(from_values)`` takes every ``From`` header value of the message and returns
the one mailbox it names, or raises ``FromRefused`` with a one-line reason (ingest answers it 550 5.7.1):

* exactly one From header, holding exactly one mailbox — no group syntax, no lists;
* 8-bit values (RFC 6532, as ``email`` hands them over: surrogate escapes) must be UTF-8;
* parsed with the RFC 5322 parser of ``email.headerregistry`` and refused on *any*
  defect it reports (``email.utils.parseaddr`` is never used: it misparses shapes such
  as ``alice@corp.com)<bob@evil.com>``, CVE-2023-27043);
* no encoded words in the address, no control characters, no second ``@`` or ``<``
  outside quoted/encoded display names;
* the display name may not hold an address other than the real one
  (``"ceo@corp.com" <mallory@evil.com>`` is refused; Outlook's
  ``"alice@corp.com" <alice@corp.com>`` is fine).

These checks run before authenticity, so their refusals are always 5.7.1.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bccd.addresses import AddressError, normalize_email

_registry_cache: list[object] = []
_EMAILISH = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+\.[^\s<>\"'(),;:@]+")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class FromRefused(ValueError):
    """The From header is not one acceptable mailbox; ``reason`` is one line for the
    sender, ``detail`` is for the log."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Mailbox:
    email: str        # normalized (lowercase local part, IDNA-ascii domain)
    name: str         # decoded display name

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


def _registry() -> object:
    if not _registry_cache:
        from email.headerregistry import HeaderRegistry

        _registry_cache.append(HeaderRegistry())
    return _registry_cache[0]


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def parse_from(from_values: list[str]) -> Mailbox:
    if not from_values:
        raise FromRefused("The message has no From header")
    if len(from_values) > 1:
        raise FromRefused("The message has more than one From header")
    return _parse_mailbox(from_values[0])


# A pure function of the header value, and people send from the same From again and again:
# the mailboxes of recent values are kept (a refusal is an exception: never kept, the value
# is judged again each time).
@functools.lru_cache(maxsize=4096)
def _parse_mailbox(raw_value: str) -> Mailbox:
    value = _unfold(_utf8(raw_value))
    if _CTL.search(value.replace("\t", " ")):
        raise FromRefused("The From header contains control characters")
    if len(value) > 2000:
        raise FromRefused("The From header is too long")
    try:
        header = _registry()("from", value)  # type: ignore[operator]
    except Exception:
        raise FromRefused("The From header cannot be parsed") from None
    if header.defects:
        raise FromRefused(_malformed_reason(value), detail=repr(header.defects))
    groups = header.groups
    if len(groups) != 1 or groups[0].display_name is not None:
        raise FromRefused("The From header must hold one mailbox, not a group or a list")
    addrs = groups[0].addresses
    if len(addrs) != 1:
        raise FromRefused("The From header must hold exactly one mailbox")
    a = addrs[0]
    if not a.username or not a.domain:
        raise FromRefused("The From address is incomplete")
    spec = a.addr_spec
    if "=?" in spec or "?=" in spec:
        raise FromRefused("The From address contains encoded words")
    if spec.count("@") != 1 or a.username.startswith('"'):
        raise FromRefused("The From address has an unusual local part")
    # the address must stand in the raw value as written: the parser never invents one
    if spec.lower() not in value.lower():
        raise FromRefused("The From header is ambiguous")
    # outside the display name, only one address may appear
    raw_addrs = {m.lower() for m in _EMAILISH.findall(_strip_quoted(value))}
    try:
        email = normalize_email(spec)
    except AddressError as exc:
        raise FromRefused(f"The From address is not valid: {exc}") from None
    for other in raw_addrs:
        other = other.strip(".<>")
        if other != spec.lower() and _norm(other) != email:
            raise FromRefused("The From header names more than one address")
    name = str(a.display_name or "")
    for found in _EMAILISH.findall(name):
        if _norm(found.strip(".<>")) != email:
            raise FromRefused(
                "The From display name holds an address other than the sender's"
            )
    return Mailbox(email=email, name=name[:255])


def _utf8(value: str) -> str:
    """A header as text: RFC 6532 UTF-8 octets, which the bytes parser hands over as
    surrogate escapes, decoded; anything that is not UTF-8 is refused."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        raise FromRefused("The From header is not valid UTF-8") from None


_ENCODED_ADDRESS = re.compile(r"\?=\s*@|@\s*=\?|<\s*=\?")


def _malformed_reason(value: str) -> str:
    """The most telling one-line reason for a From header the parser found defects in."""
    bare = _strip_quoted(value)
    if _ENCODED_ADDRESS.search(value):
        return "The From address contains encoded words"
    if len({m.lower().strip(".<>") for m in _EMAILISH.findall(bare)}) > 1:
        return "The From header names more than one address"
    return "The From header is malformed"


def _norm(address: str) -> str | None:
    try:
        return normalize_email(address)
    except AddressError:
        return None


def _strip_quoted(value: str) -> str:
    """The value without quoted strings and encoded words (display-name material)."""
    value = re.sub(r'"(?:[^"\\]|\\.)*"', " ", value)
    return re.sub(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", " ", value)
