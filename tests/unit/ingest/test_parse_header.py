"""The header block's end (``parse.header_end``) and the content hash: plain substring
searches and splits give what the regular expressions they replace gave."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from bccd.ingest.parse import (
    _ASCII_WHITESPACE,
    TRACE_HEADERS,
    HeaderTooBig,
    content_hash,
    header_block_size,
    header_end,
)

CORPORA = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora"

_PATTERN = re.compile(rb"\r?\n\r?\n")


def _by_regex(raw: bytes, endpos: int) -> int | None:
    m = _PATTERN.search(raw, 0, endpos)
    return None if m is None else m.start()


@pytest.mark.parametrize("raw", [
    b"", b"\n", b"\n\n", b"\r\n\r\n", b"\r\n\n", b"\n\r\n", b"\r\r\n\n", b"a\r\n\r",
    b"Subject: x\r\n\r\nbody\n\nmore", b"Subject: x\n\nbody", b"a\nb\r\n\r\n", b"a\r\nb\n\n",
])
def test_the_header_ends_where_the_pattern_first_matches(raw: bytes) -> None:
    for endpos in range(len(raw) + 2):
        assert header_end(raw, endpos) == _by_regex(raw, endpos), (raw, endpos)


def test_random_line_breaks_agree_with_the_pattern() -> None:
    rnd = random.Random(25)
    for _ in range(5000):
        raw = bytes(rnd.choice(b"\r\nab:") for _ in range(rnd.randrange(0, 24)))
        endpos = rnd.randrange(0, len(raw) + 3)
        assert header_end(raw, endpos) == _by_regex(raw, endpos), (raw, endpos)


def test_a_header_block_over_the_limit_is_refused() -> None:
    assert header_block_size(b"A: b\r\n\r\nbody", 10) == 4
    with pytest.raises(HeaderTooBig):
        header_block_size(b"A: " + b"b" * 20 + b"\r\n\r\nbody", 10)
    with pytest.raises(HeaderTooBig):
        header_block_size(b"A: " + b"b" * 20, 10)
    assert header_block_size(b"A: b", 10) == 4


def _hash_by_regex(raw: bytes, header_len: int) -> str:
    """The content hash as it was computed with a regular expression split and text names."""
    kept: list[bytes] = []
    current: list[bytes] = []
    skip = False
    for line in re.split(rb"\r?\n", raw[:header_len]):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                current.append(line.strip())
            continue
        if current:
            kept.append(b" ".join(current))
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        skip = name in TRACE_HEADERS or name.startswith("x-")
        current = [] if skip else [line.strip()]
    if current:
        kept.append(b" ".join(current))
    h = hashlib.sha256()
    h.update(b"\n".join(sorted(kept)))
    h.update(b"\n\n")
    h.update(raw[header_len:].translate(None, _ASCII_WHITESPACE))
    return h.hexdigest()


def test_the_content_hash_of_the_corpora_is_unchanged() -> None:
    files = [p for p in CORPORA.rglob("*") if p.is_file() and p.suffix != ".md"]
    assert files
    for path in files:
        raw = path.read_bytes()
        end = header_end(raw, len(raw))
        hl = len(raw) if end is None else end
        assert content_hash(raw, hl) == _hash_by_regex(raw, hl), path


def test_the_content_hash_of_random_headers_is_unchanged() -> None:
    rnd = random.Random(25)
    for _ in range(5000):
        raw = bytes(rnd.choice(b"\r\n \t:aXx-Rr\xc9\xe9") for _ in range(rnd.randrange(0, 40)))
        hl = rnd.randrange(0, len(raw) + 1)
        assert content_hash(raw, hl) == _hash_by_regex(raw, hl), (raw, hl)
    received = b"Received: from a\r\n\tby b\r\nX-Trace: 1\r\nSubject: s\r\n\r\nbody"
    assert content_hash(received, received.index(b"\r\n\r\n")) == \
        _hash_by_regex(received, received.index(b"\r\n\r\n"))
