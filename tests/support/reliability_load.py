"""An external SMTP load generator for the reliability tests (a separate process).

``python -m tests.support.reliability_load --port P --rcpt ADDR --out FILE --tag T
[--first N --count M | --ids 1,2,3] [--concurrency C] [--until-down]``

Sends message ``i`` (``message(tag, i)``: a unique Message-ID ``<T-i@acme.test>``, every
fourth one with a small attachment) over ``aiosmtplib`` from ``C`` concurrent sessions and
appends one JSON line per attempt to ``FILE`` — flushed before the next message, so the
file is the client's truth even when the server dies:
``{"i": 7, "status": "ack"}`` (250 to DATA), ``"nak"`` (any other reply, with ``code``)
or ``"err"`` (the connection failed: the client does not know what happened).
With ``--until-down`` a session stops at its first connection failure (the server was
killed); without, it reconnects and retries the same message (up to 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from email.message import EmailMessage
from typing import TextIO

import aiosmtplib

FROM = "alice@acme.test"


def message(tag: str, i: int) -> bytes:
    m = EmailMessage()
    m["From"] = f"Alice <{FROM}>"
    m["To"] = f"Customer {i % 7} <c{i % 7}@client.test>"
    m["Subject"] = f"{tag} message {i}"
    m["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    m["Message-ID"] = f"<{tag}-{i}@acme.test>"
    m.set_content(f"Message {i} of run {tag}.\n" + "Lorem ipsum dolor sit amet.\n" * 20)
    if i % 4 == 0:
        m.add_attachment(f"attachment of {tag}-{i}\n".encode() * 50, maintype="application",
                         subtype="octet-stream", filename=f"a{i}.bin")
        m.set_boundary(f"b-{tag}-{i}")  # deterministic bytes: the test recomputes them
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Run:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        ids = [int(x) for x in args.ids.split(",") if x] if args.ids else \
            list(range(args.first, args.first + args.count))
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        for i in ids:
            self.queue.put_nowait(i)

    def record(self, i: int, status: str, code: int | None = None) -> None:
        self.out.write(json.dumps({"i": i, "status": status, "code": code}) + "\n")
        self.out.flush()

    async def session(self) -> None:
        a = self.args
        client: aiosmtplib.SMTP | None = None
        while True:
            try:
                i = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            raw = message(a.tag, i)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client is None:
                        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=a.port, timeout=30,
                                                 start_tls=False, local_hostname="load.test")
                        await client.connect()
                    await client.sendmail(FROM, [a.rcpt], raw)
                    self.record(i, "ack")
                    break
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    client = await _drop(client)
                    self.record(i, "nak", exc.recipients[0].code if exc.recipients else None)
                    break
                except aiosmtplib.SMTPResponseException as exc:
                    client = await _drop(client)
                    self.record(i, "nak", exc.code)
                    break
                except (aiosmtplib.SMTPException, OSError):
                    client = await _drop(client)
                    if a.until_down or time.monotonic() > deadline:
                        self.record(i, "err")
                        if a.until_down:
                            return
                        break
                    await asyncio.sleep(0.2)
        await _drop(client)

    async def main(self) -> None:
        await asyncio.gather(*(self.session() for _ in range(self.args.concurrency)))


async def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        try:
            await client.quit()
        except Exception:
            client.close()
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rcpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--ids", default="")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--until-down", action="store_true")
    args = p.parse_args()
    with open(args.out, "a", encoding="utf-8") as out:
        asyncio.run(Run(args, out).main())


if __name__ == "__main__":
    main()
