"""Trying a mailbox before it is saved (SPEC §7): log in and list its folders.

``probe(account, auth)`` connects exactly as the sync will (TLS checked, OAuth token
refreshed when due), lists the folders and logs out. Returns ``Folder`` records (name,
SPECIAL-USE flag, selectable) for the page's folder choice; raises
``mailboxes.control.LoginFailed`` with the one-line reason of ``imap.client`` — the
server's own words for a refused login, the certificate problem for TLS, "refused" or
"cannot resolve" for an unreachable host. ``bccd.service`` hands it to the fronts
through ``MailboxControl.probe``.
"""

from __future__ import annotations

from bccd.imap.client import (
    AuthFailure,
    ConnectFailure,
    ImapFailure,
    TlsFailure,
    connect,
)
from bccd.mailboxes.accounts import AccountConfig, Auth
from bccd.mailboxes.control import Folder, LoginFailed

SPECIAL = ("\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent", "\\trash", "\\important")


def _kind(exc: ImapFailure) -> str:
    if isinstance(exc, AuthFailure):
        return "auth"
    if isinstance(exc, TlsFailure):
        return "tls"
    if isinstance(exc, ConnectFailure):
        return "connect"
    return "protocol"


async def probe(account: AccountConfig, auth: Auth) -> list[Folder]:
    try:
        imap = await connect(account, auth)
    except ImapFailure as exc:
        raise LoginFailed(exc.reason, kind=_kind(exc)) from None
    try:
        infos = await imap.list_folders()
    except ImapFailure as exc:
        raise LoginFailed(exc.reason, kind=_kind(exc)) from None
    finally:
        await imap.close()
    out = []
    for f in infos:
        special = next((s for s in SPECIAL if s in f.flags), "")
        out.append(Folder(f.name, "\\" + special[1:].title() if special else "", f.selectable))
    return out
