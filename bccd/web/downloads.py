"""Downloads of stored mail (attachments, raw messages) for the API and the Mail page.

``download(data, filename, content_type)`` → a response that always downloads (never
renders): ``Content-Disposition: attachment`` with an RFC 6266 / RFC 5987 filename, a
content type reduced to a plain ``type/subtype`` (anything else becomes
``application/octet-stream``), ``nosniff``, a ``sandbox`` CSP (should a browser render it
anyway, nothing runs and nothing is loaded) and no caching.

``download_blob(db, reader, filename, content_type)`` is the same response streamed from a
``BlobReader`` (attachments): one chunk (1 MiB) at a time, each read in a database
thread, with ``Content-Length`` set, so an attachment is never whole in memory and a
download cut short (its blob deleted meanwhile) shows as short to the client.

Access is decided before: attachments through ``bccd.mailstore.attachments.read_attachment``
(ownership through the message and thread visibility — never by digest), raw messages
through ``mailstore.read.raw_message``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from bccd.store.blobs import BlobReader
from bccd.store.db import Database

_CTYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/;]+')


def safe_content_type(value: str) -> str:
    v = (value or "").strip().lower()
    return v if _CTYPE.match(v) else "application/octet-stream"


def content_disposition(filename: str, fallback: str = "download") -> str:
    name = _UNSAFE.sub("_", filename or "").strip(" .") or fallback
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", ascii_name).strip(" .") or fallback
    value = f'attachment; filename="{ascii_name[:150]}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name[:150], safe='')}"
    return value


def _headers(filename: str) -> dict[str, str]:
    return {
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer",
    }


def download(data: bytes, filename: str, content_type: str) -> Response:
    return Response(data, media_type=safe_content_type(content_type), headers=_headers(filename))


def download_blob(db: Database, reader: BlobReader, filename: str,
                  content_type: str) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            while chunk := await db.run(reader.read_chunk):
                yield chunk
        finally:
            reader.close()  # an open file at most: also when the client went away

    headers = _headers(filename)
    headers["Content-Length"] = str(reader.size)
    return StreamingResponse(body(), media_type=safe_content_type(content_type), headers=headers)
