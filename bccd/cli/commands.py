"""The command modules, in the order ``bccd --help`` lists them."""

from __future__ import annotations

from bccd.cli import (
    alt,
    block,
    company,
    db,
    doctor,
    imap,
    items,
    lifecycle,
    mail,
    person,
    quarantine,
    quickstart,
    serve,
    user,
)

MODULES = [serve, quickstart, db, company, user, alt, block, person, items, mail, quarantine, imap,
           lifecycle, doctor]
