"""The SMTP path of MAIL FROM / RCPT TO in its everyday shape, read without the email package.

``simple_path(arg)`` takes what follows ``FROM:`` / ``TO:`` (already stripped, as aiosmtpd
hands it to ``SMTP._getaddr``) and returns ``(address, rest)`` — the same pair aiosmtpd's
own parser (``email._header_value_parser.get_angle_addr``) returns — when ``arg`` is a
strict RFC 5321 ``Path`` in plain ASCII:

* ``<`` Dot-string ``@`` Domain ``>`` — atext atoms joined by single dots, the domain
  letters, digits and inner hyphens in dot-separated labels; then nothing, or whitespace
  and the ESMTP parameters (``rest`` is what follows the whitespace);
* the null path ``<>``, followed by anything (``rest`` is all of it, verbatim).

Anything else — no angle brackets, source routes, quoted local parts, address literals,
comments, encoded-word look-alikes (``=?``), 8-bit (SMTPUTF8) addresses, stray
characters — returns ``None``: the caller then uses aiosmtpd's parser, so every unusual or
malformed path gets exactly the reply it got before. This is only the fast lane for the
shape nearly every client sends: the email package's header parser costs a hundred times
more per command (``tests/unit/smtp/test_paths.py`` checks both agree).
"""

from __future__ import annotations

import re

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>(.*)", re.DOTALL)


def simple_path(arg: str) -> tuple[str, str] | None:
    """``(address, rest)`` as aiosmtpd's parser gives them, or ``None`` (not the simple
    shape: let that parser decide)."""
    if arg.startswith("<>"):
        return "<>", arg[2:]
    m = _PATH.fullmatch(arg)
    if m is None:
        return None
    address, after = m.group(1), m.group(2)
    if "=?" in address:
        return None  # the email parser would try to decode it as an encoded word
    if not after:
        return address, ""
    if after[0] not in " \t":
        return None
    rest = after.lstrip()
    if rest.startswith("("):
        return None  # a comment: the email parser skips it
    return address, rest
