"""What the linking rules read of a user, a company and a thread — as protocols, so the
hot path (``ingest.filing``) can pass small records read with one plain query while the
other callers (API, CLI, retroactive linking) pass their ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class OwnerLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def company_id(self) -> int: ...

    @property
    def email(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...

    @property
    def linking_mode(self) -> str: ...

    @property
    def sharing_default(self) -> str: ...


class CompanyLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def create_unknown_contacts(self) -> bool: ...


class ThreadLike(Protocol):
    """An ORM ``Thread`` or ``threading.ThreadRow``."""

    @property
    def id(self) -> int: ...

    @property
    def manual_items(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Owner:
    id: int
    company_id: int
    email: str
    is_admin: bool
    linking_mode: str
    sharing_default: str


@dataclass(frozen=True, slots=True)
class Org:
    id: int
    create_unknown_contacts: bool
