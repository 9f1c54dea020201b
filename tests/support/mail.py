"""Building and sending test messages over real SMTP."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid


def make_message(
    *,
    frm: str = "Alice <alice@acme.test>",
    to: str = "Bob <bob@client.test>",
    cc: str | None = None,
    subject: str = "Hello",
    body: str = "Hi Bob,\nlet's talk.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    m["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    m["Message-ID"] = message_id or make_msgid(domain="acme.test")
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    if references:
        m["References"] = references
    for k, v in (extra_headers or {}).items():
        m[k] = v
    m.set_content(body)
    if html:
        m.add_alternative(html, subtype="html")
    for name, ctype, data in attachments or []:
        maintype, _, subtype = ctype.partition("/")
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def send(port: int, rcpts: list[str] | str, raw: bytes, *, mail_from: str = "alice@acme.test",
         host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One SMTP transaction; returns DATA's (code, text). RCPT refusals raise."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    with smtplib.SMTP(host, port, timeout=60) as s:
        s.ehlo("client.test")
        code, msg = s.mail(mail_from)
        assert code == 250, (code, msg)
        for r in rcpts:
            code, msg = s.rcpt(r)
            if code >= 400:
                raise smtplib.SMTPRecipientsRefused({r: (code, msg)})
        return s.data(raw)


def dialog(port: int, lines: list[bytes], *, host: str = "127.0.0.1", timeout: float = 30) -> list[str]:
    """Send raw lines (pipelined) and collect every reply line until the server closes
    or QUIT's 221 arrives."""
    import socket

    with socket.create_connection((host, port), timeout) as sock:
        f = sock.makefile("rb")
        greeting = f.readline().decode()
        sock.sendall(b"".join(lines))
        replies = [greeting.rstrip("\r\n")]
        while True:
            line = f.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            replies.append(text)
            if text.startswith("221"):
                break
        return replies
