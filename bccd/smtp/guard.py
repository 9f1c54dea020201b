"""Protocol guards of the SMTP front: pure functions, no I/O, no state.

* ``valid_helo(name)`` — a HELO/EHLO/LHLO (or XFORWARD HELO/NAME) value bccd accepts:
  1–255 printable characters, no whitespace, no control characters (CR, LF, NUL …), no
  undecodable bytes. Anything else is ``501 5.5.4`` so that such a name can never reach
  a log line, an ``Authentication-Results`` value or any stored header.
* ``screen_data(raw)`` — the content checks made before a message reaches ingest;
  ``None`` when the message may proceed, else the catalogue reply that refuses it:
  NUL anywhere → ``554 5.6.0``; a line holding only a dot whose line ending on either
  side is a bare CR or bare LF (``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n``, ``\\r\\n.\\n`` …) →
  ``554 5.6.0``. Such a line never ends DATA (aiosmtpd only ends it on ``CRLF.CRLF``), so
  nothing is ever split; it is refused because it is only ever sent to smuggle a second
  message past a lenient server (SMTP smuggling). Bare CR/LF elsewhere are accepted and
  kept byte-for-byte (DKIM). Runs in O(n) over the bytes (``bytes.find``).
  ``WireScanner`` makes the same dot-line check on the dot-stuffed bytes as they arrive
  (``\r\n.\n`` is only visible there: unstuffing removes its dot).
* ``parse_xforward(arg)`` — ``XFORWARD`` attributes (Postfix XFORWARD_README) as a dict
  ``{NAME|ADDR|PORT|PROTO|HELO|IDENT|SOURCE|LOGIN|DESTADDR|DESTPORT: value}``, xtext
  decoded; ``[UNAVAILABLE]``/``[TEMPUNAVAIL]`` map to ``""`` (forget the value). Raises
  ``ValueError`` for an unknown attribute or an invalid value.
* ``ip_in(ip, networks)`` — whether a peer address (IPv4-mapped IPv6 included) is in
  one of the networks (``smtp.trusted_relays``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from bccd import replies as R
from bccd.replies import Reply

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HELO = 255


def valid_helo(name: str) -> bool:
    if not 0 < len(name) <= MAX_HELO:
        return False
    return name.isprintable() and not any(c.isspace() for c in name)


_BARE_DOT_LINES = (b"\n.\n", b"\r.\n", b"\r.\r", b"\n.\r")


def _bare_dot_line(raw: bytes) -> bool:
    for pattern in _BARE_DOT_LINES:
        i = raw.find(pattern)
        while i != -1:
            if pattern != b"\n.\r":
                return True
            # "\n.\r" is also the middle of a proper "\r\n.\r\n" (a dot-stuffed "..")
            proper = i > 0 and raw[i - 1] == 0x0D and raw[i + 3:i + 4] == b"\n"
            if not proper:
                return True
            i = raw.find(pattern, i + 1)
    return False


class WireScanner:
    """Looks for a bare-CR/LF dot line in DATA as it arrives on the wire, chunk by chunk.

    This is where SMTP smuggling happens: the dot-stuffed bytes, before aiosmtpd strips
    the leading dot of each line (after which ``\r\n.\n`` is no longer visible).
    ``feed(chunk)`` → whether one was seen so far. On the wire a proper ``\r\n.\r\n`` is
    only ever the end of DATA; every other dot between line breaks is suspect.
    """

    def __init__(self) -> None:
        self.tail = b"\r\n"   # DATA itself ended with CRLF
        self.found = False

    def feed(self, data: bytes) -> bool:
        if self.found or not data:
            return self.found
        window = self.tail + data
        for pattern in _BARE_DOT_LINES:
            i = window.find(pattern)
            while i != -1:
                if pattern != b"\n.\r":
                    self.found = True
                    return True
                after = window[i + 3:i + 4]
                if not after:
                    break  # decided with the next chunk (the tail keeps it)
                # i == 0: a match inside the previous tail, already decided
                if i > 0 and not (window[i - 1] == 0x0D and after == b"\n"):
                    self.found = True
                    return True
                i = window.find(pattern, i + 1)
        self.tail = window[-5:]
        return False


def screen_data(raw: bytes) -> Reply | None:
    if b"\x00" in raw:
        return R.NUL_IN_DATA
    if _bare_dot_line(raw):
        return R.BARE_LINE_ENDING
    return None


XFORWARD_ATTRIBUTES = frozenset(
    {"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "LOGIN", "DESTADDR", "DESTPORT"})
_UNAVAILABLE = frozenset({"[UNAVAILABLE]", "[TEMPUNAVAIL]"})
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_PROTO = re.compile(r"[A-Za-z0-9-]{1,32}")
_PORT = re.compile(r"\d{1,5}")
_SOURCE = re.compile(r"(?i)LOCAL|REMOTE")


def _xtext_decode(value: str) -> str:
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


def _address(value: str) -> str:
    if value[:5].upper() == "IPV6:":
        value = value[5:]
    return str(ipaddress.ip_address(value))  # ValueError when it is not an address


def parse_xforward(arg: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in arg.split():
        name, eq, value = item.partition("=")
        name = name.upper()
        if not eq or name not in XFORWARD_ATTRIBUTES:
            raise ValueError(f"unknown XFORWARD attribute {name[:32]!r}")
        value = _xtext_decode(value)
        if value.upper() in _UNAVAILABLE:
            out[name] = ""
            continue
        if name in ("ADDR", "DESTADDR"):
            value = _address(value)
        elif name in ("NAME", "HELO", "IDENT", "LOGIN"):
            if not valid_helo(value):
                raise ValueError(f"invalid XFORWARD {name}")
        elif name in ("PORT", "DESTPORT"):
            if not _PORT.fullmatch(value):
                raise ValueError(f"invalid XFORWARD {name}")
        elif name == "PROTO":
            if not _PROTO.fullmatch(value):
                raise ValueError("invalid XFORWARD PROTO")
            value = value.upper()
        elif name == "SOURCE" and not _SOURCE.fullmatch(value):
            raise ValueError("invalid XFORWARD SOURCE")
        out[name] = value
    if not out:
        raise ValueError("XFORWARD without attributes")
    return out


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def ip_in(ip: str, networks: Iterable[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)
