"""The faster integer/bytes conversions bccd gives dkimpy (``bccd.auth.authenticator``)
agree with dkimpy's own, byte for byte."""

from __future__ import annotations

import random

import dkim.crypto as crypto
import pytest

import bccd.auth.authenticator  # noqa: F401 - installs the conversions


def _reference_int2str(n: int, length: int = -1) -> bytearray:
    r = bytearray()
    while length < 0 or len(r) < length:
        r.append(n & 0xFF)
        n >>= 8
        if length < 0 and n == 0:
            break
    r.reverse()
    return r


def _reference_str2int(s: bytes) -> int:
    r = 0
    for c in bytearray(s):
        r = (r << 8) | c
    return r


def test_the_conversions_are_installed() -> None:
    assert crypto.int2str.__module__ == "bccd.auth.authenticator"
    assert crypto.str2int.__module__ == "bccd.auth.authenticator"


@pytest.mark.parametrize("bits", [0, 1, 7, 8, 9, 255, 1024, 2048, 4096])
def test_int2str_and_str2int_match_dkimpy(bits: int) -> None:
    rnd = random.Random(bits)
    for _ in range(50):
        n = rnd.getrandbits(bits) if bits else 0
        assert bytes(crypto.int2str(n)) == bytes(_reference_int2str(n))
        for length in (0, 1, bits // 8, bits // 8 + 1, bits // 8 + 5, 256):
            assert bytes(crypto.int2str(n, length)) == bytes(_reference_int2str(n, length))
        raw = bytes(_reference_int2str(n))
        assert crypto.str2int(raw) == _reference_str2int(raw) == n
        assert crypto.str2int(b"\x00\x00" + raw) == n

    with pytest.raises(AssertionError):
        crypto.int2str(-1)
