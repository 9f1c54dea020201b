"""The baseline: a bare aiosmtpd server that answers 250 to everything.

``python -m bench.sink PORT`` — the same library, the same event loop kind and the same
kind of process as ``bccd serve``, with none of bccd's work: the ceiling bccd is
measured against."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


def protocol(handler: Any, hostname: str, loop: asyncio.AbstractEventLoop) -> SMTP:
    """aiosmtpd's protocol with the settings every baseline server here uses."""
    return SMTP(handler, data_size_limit=25 * 1024 * 1024, enable_SMTPUTF8=True,
                hostname=hostname, loop=loop)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol(Sink(), "sink", loop),
                                      host="127.0.0.1", port=port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
