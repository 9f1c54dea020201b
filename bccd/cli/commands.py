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
    send,
    serve,
    user,
)

MODULES = [serve, db, company, user, alt, block, person, items, mail, send, quarantine, imap,
           lifecycle, doctor]
