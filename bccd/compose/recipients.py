"""The addresses of a message being written, parsed strictly (SPEC §12).

``parse(values, field)`` takes what a person or a client typed — each value one address
(``bob@example.com``, ``Bob Smith <bob@example.com>``) or several separated by commas —
and returns ``Recipient`` records; anything that is not an address is
``bccd.errors.Invalid`` naming the field and the position (``to[1]: "bob@" is not an
email address``), so the API answers a problem naming the field and the Mail page shows
the error next to it. ``envelope(to, cc, bcc)`` is the deduplicated recipient list.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bccd.addresses import AddressError, normalize_domain, normalize_email
from bccd.errors import Invalid
from bccd.ingest.parse import split_address_list

MAX_RECIPIENTS = 100
MAX_NAME = 200
# ``Name <addr>`` / ``"Name, Inc." <addr>`` / ``<addr>``, and a bare ``addr``
_NAME_ADDR = re.compile(r'\s*(?:"(?P<qname>(?:[^"\\]|\\.)*)"|(?P<name>[^"<>@,;]*?))\s*'
                        r'<(?P<addr>[^<>\s"(),;:@]+@[^<>\s"(),;:@]+)>\s*')
_BARE = re.compile(r'\s*(?P<addr>[^<>\s"(),;:@]+@[^<>\s"(),;:@]+)\s*')


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str      # normalized: lowercase, the domain IDNA-encoded (for matching)
    address: str    # as written, with the normalized domain (for the envelope and headers)
    name: str = ""

    @property
    def needs_utf8(self) -> bool:
        return not self.address.isascii()

    def formatted(self) -> str:
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address


def one(value: str, where: str) -> Recipient:
    """A single address (``Name <addr>`` or ``addr``)."""
    found = parse([value], where)
    if len(found) != 1:
        raise Invalid(f"{where}: give exactly one address")
    return found[0]


def parse(values: Iterable[str], field: str) -> list[Recipient]:
    out: list[Recipient] = []
    for i, value in enumerate(values):
        where = f"{field}[{i}]"
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"{where}: an empty address")
        if any(c in value for c in "\r\n\x00"):
            raise Invalid(f"{where}: line breaks are not allowed in an address")
        pieces = split_address_list(value)
        if not pieces:
            raise Invalid(f"{where}: {value.strip()[:200]!r} is not an email address")
        for piece in pieces:
            m = _NAME_ADDR.fullmatch(piece) or _BARE.fullmatch(piece)
            if m is None:
                raise Invalid(f"{where}: {piece[:200]!r} is not an email address")
            name = (m.group("qname") or m.group("name") or "") if m.re is _NAME_ADDR else ""
            out.append(_recipient(name.replace('\\"', '"'), m.group("addr"), where, piece))
    if len(out) > MAX_RECIPIENTS:
        raise Invalid(f"{field}: at most {MAX_RECIPIENTS} addresses")
    return out


def _recipient(name: str, addr: str, where: str, value: str) -> Recipient:
    try:
        normalized = normalize_email(addr)
        local, _, domain = addr.strip().rpartition("@")
        written = f"{local}@{normalize_domain(domain)}"
    except AddressError:
        raise Invalid(f"{where}: {value.strip()[:200]!r} is not an email address") from None
    name = " ".join(name.split())[:MAX_NAME]
    if name == addr or name == normalized:
        name = ""
    return Recipient(normalized, written, name)


def envelope(*groups: Sequence[Recipient]) -> list[Recipient]:
    """Every recipient once (first spelling wins), in order."""
    seen: set[str] = set()
    out: list[Recipient] = []
    for group in groups:
        for r in group:
            if r.email not in seen:
                seen.add(r.email)
                out.append(r)
    if len(out) > MAX_RECIPIENTS:
        raise Invalid(f"to, cc and bcc: at most {MAX_RECIPIENTS} recipients in all")
    return out
