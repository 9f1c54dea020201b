"""Address normalisation and the Smart Bcc address grammar (SPEC §2).

* Domains are compared after IDNA 2008 / UTS #46 (the ``idna`` package) and lowercasing.
* Local parts compare case-insensitively; sub-addressing is **not** stripped.
* User address: ``<slug>+<token>@<bcc_domain>``; entity address:
  ``<slug>+<kind>-<id>-<sig>@<bcc_domain>`` with ``sig`` an HMAC of (slug, kind, id).
* A display name (of a user, company, person or organization — what a mail header may
  carry beside an address) holds no control character and no line break
  (``name_problem``): C0 (tab included), DEL, C1 (``\x85`` is a line break to some
  software) and the Unicode line and paragraph separators.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import idna


@dataclass(frozen=True, slots=True)
class Addr:
    """A mailbox as bccd keeps it: the normalized address and its display name."""

    email: str   # normalized
    name: str


class AddressError(ValueError):
    """An address or domain that is not acceptable; the message says why."""


_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
TOKEN_RE = re.compile(r"^[a-z2-7]{12,64}$")
ENTITY_KINDS = ("deal", "lead", "project")
_ENTITY_RE = re.compile(r"^(deal|lead|project)-([1-9][0-9]{0,18})-([a-z2-7]{10,64})$")


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a display name, or None when it can."""
    if _CONTROL_RE.search(name):
        return "must not contain control characters or line breaks"
    return None


def normalize_domain(domain: str) -> str:
    """UTS #46 map + IDNA 2008 encode + lowercase; raise AddressError if invalid."""
    d = domain.strip().rstrip(".")
    if not d:
        raise AddressError("empty domain")
    if d.startswith("[") and d.endswith("]"):
        raise AddressError("address literals are not accepted")
    try:
        ascii_domain = idna.encode(d, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise AddressError(f"invalid domain {domain!r}: {exc}") from None
    ascii_domain = ascii_domain.lower()
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise AddressError(f"invalid domain {domain!r}")
    return ascii_domain


def normalize_email(address: str) -> str:
    """``Local@Dömain.Example`` → ``local@xn--dmain-jua.example``."""
    addr = address.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{address!r} is not an email address")
    if len(local) > 64 and local.isascii():
        raise AddressError(f"{address!r}: local part longer than 64 octets")
    if any(c in local for c in " \t\r\n<>()[],;:\\\"") or local.startswith(".") or ".." in local:
        # quoted local parts are legal but never appear as CRM login addresses
        raise AddressError(f"{address!r} is not an email address bccd accepts")
    if any(ord(c) < 32 or ord(c) == 127 for c in local):
        raise AddressError(f"{address!r} contains control characters")
    return f"{local.lower()}@{normalize_domain(domain)}"


def try_normalize_email(address: str) -> str | None:
    try:
        return normalize_email(address)
    except AddressError:
        return None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def new_bcc_token() -> str:
    """16 characters of lowercase base32: 80 bits, unguessable."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def entity_signature(secret: str, slug: str, kind: str, entity_id: int) -> str:
    mac = hmac.new(secret.encode(), f"{slug}\x00{kind}\x00{entity_id}".encode(), hashlib.sha256)
    return base64.b32encode(mac.digest()[:10]).decode("ascii").lower()


def user_bcc_address(slug: str, token: str, bcc_domain: str) -> str:
    return f"{slug}+{token}@{bcc_domain}"


def entity_bcc_address(secret: str, slug: str, kind: str, entity_id: int, bcc_domain: str) -> str:
    sig = entity_signature(secret, slug, kind, entity_id)
    return f"{slug}+{kind}-{entity_id}-{sig}@{bcc_domain}"


@dataclass(frozen=True, slots=True)
class BccTarget:
    """What a recipient at the Bcc domain names: a user token or a signed entity."""

    slug: str
    token: str | None = None
    kind: str | None = None
    entity_id: int | None = None
    sig: str | None = None


def parse_bcc_local_part(local: str) -> BccTarget | None:
    """``acme+k3j...`` → BccTarget; None when it cannot be one of ours."""
    local = local.lower()
    slug, plus, rest = local.partition("+")
    if not plus or not SLUG_RE.match(slug):
        return None
    m = _ENTITY_RE.match(rest)
    if m:
        return BccTarget(slug=slug, kind=m.group(1), entity_id=int(m.group(2)), sig=m.group(3))
    if TOKEN_RE.match(rest):
        return BccTarget(slug=slug, token=rest)
    return None


def verify_entity_signature(secrets_: list[str], target: BccTarget) -> bool:
    """Constant-time check against the current and old secret keys."""
    if target.kind is None or target.entity_id is None or target.sig is None:
        return False
    ok = False
    for key in secrets_:
        if not key:
            continue
        expected = entity_signature(key, target.slug, target.kind, target.entity_id)
        ok |= hmac.compare_digest(expected, target.sig)
    return ok


def hash_token(token: str) -> str:
    """API and confirmation tokens are stored as SHA-256 (they carry 128+ bits of entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


def blocked_matches(pattern: str, address: str) -> bool:
    """``x@y.com`` exact; ``@y.com`` the domain and its subdomains (SPEC §5.2)."""
    if pattern.startswith("@"):
        dom = pattern[1:]
        adom = domain_of(address)
        return adom == dom or adom.endswith("." + dom)
    return pattern == address


def normalize_block_pattern(pattern: str) -> str:
    p = pattern.strip()
    if p.startswith("@"):
        return "@" + normalize_domain(p[1:])
    return normalize_email(p)


# Public mailbox providers: a user who signs in with an address there does not make the
# provider one of the company's own domains (SPEC §5.10 ``domains``; docs/decisions.md).
PUBLIC_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
    "yahoo.com", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.de",
    "gmx.net", "gmx.com", "web.de", "mail.ru", "yandex.ru", "yandex.com", "proton.me",
    "protonmail.com", "zoho.com", "fastmail.com", "qq.com", "163.com", "126.com",
})


def default_company_domains(login_domains: Iterable[str]) -> list[str]:
    """A company's own domains when it has not named them: the domains of its users'
    login addresses (given), public mailbox providers left out."""
    return sorted({d.strip().lower() for d in login_domains} - PUBLIC_MAIL_DOMAINS - {""})
