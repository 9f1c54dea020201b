"""The command modules, in the order ``bccd --help`` lists them."""

from __future__ import annotations

from bccd.cli import (
    alt,
    blobs,
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
    serve,
    user,
)

MODULES = [serve, db, company, user, alt, block, person, items, mail, quarantine, imap, lifecycle, blobs,
           doctor]
