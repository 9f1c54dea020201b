"""The commands, in the order ``bccd --help`` lists them: each name with its one-line help
and the module that registers it.

A module is imported only when its command runs (``bccd.cli.build_parser``), so
``bccd --help`` imports none of them and ``bccd user list`` only what listing users needs —
a person feels the start of every command, and the test suite pays it hundreds of times.
``tests/unit/test_cli.py`` holds this table to what the modules register.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType


def _serve() -> ModuleType:
    from bccd.cli import serve
    return serve


def _quickstart() -> ModuleType:
    from bccd.cli import quickstart
    return quickstart


def _db() -> ModuleType:
    from bccd.cli import db
    return db


def _company() -> ModuleType:
    from bccd.cli import company
    return company


def _user() -> ModuleType:
    from bccd.cli import user
    return user


def _alt() -> ModuleType:
    from bccd.cli import alt
    return alt


def _block() -> ModuleType:
    from bccd.cli import block
    return block


def _person() -> ModuleType:
    from bccd.cli import person
    return person


def _items() -> ModuleType:
    from bccd.cli import items
    return items


def _mail() -> ModuleType:
    from bccd.cli import mail
    return mail


def _send() -> ModuleType:
    from bccd.cli import send
    return send


def _quarantine() -> ModuleType:
    from bccd.cli import quarantine
    return quarantine


def _imap() -> ModuleType:
    from bccd.cli import imap
    return imap


def _lifecycle() -> ModuleType:
    from bccd.cli import lifecycle
    return lifecycle


def _blobs() -> ModuleType:
    from bccd.cli import blobs
    return blobs


def _doctor() -> ModuleType:
    from bccd.cli import doctor
    return doctor


Loader = Callable[[], ModuleType]

COMMANDS: tuple[tuple[str, str, Loader], ...] = (
    ("serve", "run SMTP, HTTP and mailbox sync", _serve),
    ("quickstart", "create a first company and user; print a sign-in link and what to try",
     _quickstart),
    ("db", "database schema", _db),
    ("company", "companies (tenants)", _company),
    ("user", "users and their Smart Bcc addresses", _user),
    ("alt", "alternate sender addresses of a user", _alt),
    ("block", "blocked addresses and domains of a user", _block),
    ("person", "CRM persons", _person),
    ("deal", "CRM deals", _items),
    ("lead", "CRM leads", _items),
    ("project", "CRM projects", _items),
    ("mail", "the mail store", _mail),
    ("rejections", "refused copies", _mail),
    ("send", "send mail as a user, through their mailbox", _send),
    ("template", "mail templates with smart fields", _send),
    ("quarantine", "copies kept in quarantine", _quarantine),
    ("imap", "mailbox sync accounts", _imap),
    ("erase", "erase every message, person and record holding an address", _lifecycle),
    ("backup", "snapshot the database, blobs and key into a new directory", _lifecycle),
    ("restore", "restore a backup into an empty data directory", _lifecycle),
    ("blobs", "attachment blobs: where they are, moving them", _blobs),
    ("doctor", "check the installation and say what to fix", _doctor),
)
