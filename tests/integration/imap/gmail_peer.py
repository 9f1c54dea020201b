"""A scripted Gmail-shaped IMAP peer (asyncio, implicit TLS, 127.0.0.1 only).

It speaks just enough IMAP4rev1 for a sync client: CAPABILITY with ``X-GM-EXT-1``,
LOGIN, LIST with Gmail's SPECIAL-USE folders (``[Gmail]/All Mail`` is ``\\All``),
SELECT/EXAMINE, UID SEARCH (ALL, SINCE, UID ranges), UID FETCH with ``X-GM-THRID``,
``X-GM-LABELS``, ``RFC822.SIZE`` and ``BODY.PEEK[]``, UID STORE of ``X-GM-LABELS``,
UID MOVE, IDLE, NOOP, ID, LOGOUT. Every command line is recorded in ``commands``;
label changes are applied to the stored messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import ssl
from dataclasses import dataclass, field

ALL_MAIL = "[Gmail]/All Mail"
FOLDERS = [
    ("\\HasNoChildren", "INBOX"),
    ("\\HasChildren \\Noselect", "[Gmail]"),
    ("\\All \\HasNoChildren", ALL_MAIL),
    ("\\Drafts \\HasNoChildren", "[Gmail]/Drafts"),
    ("\\HasNoChildren \\Important", "[Gmail]/Important"),
    ("\\HasNoChildren \\Sent", "[Gmail]/Sent Mail"),
    ("\\HasNoChildren \\Junk", "[Gmail]/Spam"),
    ("\\Flagged \\HasNoChildren", "[Gmail]/Starred"),
    ("\\HasNoChildren \\Trash", "[Gmail]/Trash"),
    ("\\HasNoChildren", "Work"),
]
CAPS_PRE = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 SASL-IR AUTH=PLAIN"
CAPS = (
    "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS ENABLE MOVE"
    " CONDSTORE ESEARCH LIST-EXTENDED LIST-STATUS SPECIAL-USE"
)


@dataclass
class GmMessage:
    uid: int
    raw: bytes
    thrid: int
    labels: list[str]
    date: dt.date = field(default_factory=lambda: dt.date.today())


def _parse_set(spec: str, highest: int) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        if ":" in part:
            a, b = part.split(":")
            lo = highest if a == "*" else int(a)
            hi = highest if b == "*" else int(b)
            lo, hi = min(lo, hi), max(lo, hi)
            out.update(range(lo, hi + 1))
        else:
            out.add(highest if part == "*" else int(part))
    return out


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_SINCE = re.compile(r"SINCE\s+\"?(\d{1,2}-\w{3}-\d{4})\"?", re.IGNORECASE)


class GmailPeer:
    def __init__(
        self, cert_chain: str, key: str, *, user: str = "sales@gmail.test", password: str = "app-password"
    ) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert_chain, key)
        self.user, self.password = user, password
        self.uidvalidity = 11
        self.messages: dict[int, GmMessage] = {}
        self.commands: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.ca_file = ""  # set by the fixture that made the certificate

    def add(self, raw: bytes, *, thrid: int, labels: list[str], date: dt.date | None = None) -> int:
        uid = max(self.messages, default=100) + 1
        self.messages[uid] = GmMessage(uid, raw, thrid, list(labels), date or dt.date.today())
        return uid

    async def start(self) -> GmailPeer:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    # ------------------------------------------------------------ protocol

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(line: str | bytes) -> None:
            writer.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")
            await writer.drain()

        selected: str | None = None
        try:
            await send(f"* OK [CAPABILITY {CAPS_PRE}] Gimap ready for requests from 127.0.0.1")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                self.commands.append(line)
                tag, _, rest = line.partition(" ")
                cmd, _, args = rest.partition(" ")
                cmd = cmd.upper()
                if cmd == "UID":
                    sub, _, args = args.partition(" ")
                    cmd = "UID " + sub.upper()
                if cmd == "CAPABILITY":
                    await send(f"* CAPABILITY {CAPS}")
                    await send(f"{tag} OK Success")
                elif cmd == "LOGIN":
                    user, _, pw = args.partition(" ")
                    if user.strip('"') == self.user and pw.strip('"') == self.password:
                        await send(f"* CAPABILITY {CAPS}")
                        await send(f"{tag} OK {self.user} authenticated (Success)")
                    else:
                        await send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
                elif cmd in ("LIST", "XLIST"):
                    for flags, name in FOLDERS:
                        await send(f'* LIST ({flags}) "/" {_quote(name)}')
                    await send(f"{tag} OK Success")
                elif cmd in ("SELECT", "EXAMINE"):
                    selected = args.strip().strip('"')
                    if selected not in (ALL_MAIL, "INBOX"):
                        await send(f"{tag} NO [NONEXISTENT] Unknown Mailbox")
                        selected = None
                        continue
                    await send("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)")
                    await send(f"* OK [UIDVALIDITY {self.uidvalidity}] UIDs valid.")
                    await send(f"* {len(self.messages)} EXISTS")
                    await send("* 0 RECENT")
                    await send(f"* OK [UIDNEXT {max(self.messages, default=100) + 1}] Predicted next UID.")
                    mode = "READ-ONLY" if cmd == "EXAMINE" else "READ-WRITE"
                    await send(f"{tag} OK [{mode}] {selected} selected. (Success)")
                elif cmd == "UID SEARCH":
                    await send("* SEARCH " + " ".join(str(u) for u in self._search(args)))
                    await send(f"{tag} OK SEARCH completed (Success)")
                elif cmd == "UID FETCH":
                    spec, _, items = args.partition(" ")
                    for uid in sorted(_parse_set(spec, max(self.messages, default=0))):
                        m = self.messages.get(uid)
                        if m is None:
                            continue
                        seq = sorted(self.messages).index(uid) + 1
                        parts = [f"UID {uid}"]
                        up = items.upper()
                        if "X-GM-THRID" in up:
                            parts.append(f"X-GM-THRID {m.thrid}")
                        if "X-GM-LABELS" in up:
                            parts.append("X-GM-LABELS (" + " ".join(_quote(lb) for lb in m.labels) + ")")
                        if "RFC822.SIZE" in up:
                            parts.append(f"RFC822.SIZE {len(m.raw)}")
                        head = f"* {seq} FETCH (" + " ".join(parts)
                        if "BODY.PEEK[]" in up or "BODY[]" in up:
                            await send((head + f" BODY[] {{{len(m.raw)}}}\r\n").encode() + m.raw + b")\r\n")
                        else:
                            await send(head + ")")
                    await send(f"{tag} OK Success")
                elif cmd == "UID STORE":
                    spec, _, rest2 = args.partition(" ")
                    what, _, value = rest2.partition(" ")
                    labels = re.findall(r'"((?:[^"\\]|\\.)*)"|([^\s()]+)', value)
                    names = [(a or b).replace("\\\\", "\\") for a, b in labels]
                    for uid in _parse_set(spec, max(self.messages, default=0)):
                        m = self.messages.get(uid)
                        if m is None:
                            continue
                        if what.upper().startswith("-X-GM-LABELS"):
                            m.labels = [lb for lb in m.labels if lb not in names]
                        elif what.upper().startswith("+X-GM-LABELS"):
                            m.labels += [n for n in names if n not in m.labels]
                    await send(f"{tag} OK Success")
                elif cmd == "UID MOVE":
                    spec, _, dest = args.partition(" ")
                    for uid in _parse_set(spec, max(self.messages, default=0)):
                        if dest.strip('"') == "[Gmail]/Trash" and uid in self.messages:
                            self.messages[uid].labels.append("\\Trash")
                    await send(f"{tag} OK Success")
                elif cmd == "IDLE":
                    await send("+ idling")
                    done = await reader.readline()
                    self.commands.append(done.decode().rstrip())
                    await send(f"{tag} OK IDLE terminated (Success)")
                elif cmd == "LOGOUT":
                    await send("* BYE LOGOUT Requested")
                    await send(f"{tag} OK 73 good day (Success)")
                    return
                elif cmd in ("NOOP", "ID", "ENABLE", "CLOSE", "UNSELECT"):
                    await send(f"{tag} OK Success")
                else:
                    await send(f"{tag} BAD Unknown command")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _search(self, args: str) -> list[int]:
        uids = sorted(self.messages)
        m = _SINCE.search(args)
        if m:
            since = dt.datetime.strptime(m.group(1), "%d-%b-%Y").date()
            uids = [u for u in uids if self.messages[u].date >= since]
        rng = re.search(r"UID\s+(\S+)", args, re.IGNORECASE)
        if rng and uids:
            wanted = _parse_set(rng.group(1), max(self.messages))
            uids = [u for u in uids if u in wanted]
        return uids
