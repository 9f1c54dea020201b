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
    quickstart,
    send,
    serve,
    user,
)

MODULES = [serve, quickstart, db, company, user, alt, block, person, items, mail, send, quarantine, imap,
           lifecycle, blobs, doctor]
