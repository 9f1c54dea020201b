"""The RSA signature check bccd gives dkimpy (``bccd.auth.authenticator``: OpenSSL through
``cryptography`` instead of ``pow`` in Python) answers exactly as dkimpy's own
``RSASSA_PKCS1_v1_5_verify``, including where dkimpy is more lenient than OpenSSL (those
inputs go to dkimpy's function)."""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Callable
from typing import Any

import dkim
import dkim.crypto as crypto
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

import bccd.auth.authenticator  # noqa: F401 - installs the replacement
from tests.support.authkit import Key, message, sign

Verify = Callable[[Any, bytes, dict[str, int]], bool]

HASHES: dict[str, tuple[Callable[..., Any], hashes.HashAlgorithm]] = {
    "sha256": (hashlib.sha256, hashes.SHA256()),
    "sha1": (hashlib.sha1, hashes.SHA1()),
}


def _installed() -> Verify:
    fn: Verify = crypto.RSASSA_PKCS1_v1_5_verify
    return fn


def _dkimpy() -> Verify:
    original: Verify = crypto.RSASSA_PKCS1_v1_5_verify.bccd_original  # type: ignore[attr-defined]
    return original


def _both(h: Any, signature: bytes, pk: dict[str, int]) -> tuple[bool, bool]:
    """(replacement, dkimpy) for one input; dkimpy's hash object is not consumed by a check."""
    return _installed()(h, signature, pk), _dkimpy()(h, signature, pk)


@functools.cache
def _private(bits: int, which: int = 0) -> rsa.RSAPrivateKey:
    del which  # a second key of the same size
    return rsa.generate_private_key(65537, bits)


def _pk(key: rsa.RSAPrivateKey) -> dict[str, int]:
    numbers = key.public_key().public_numbers()
    return {"modulus": numbers.n, "publicExponent": numbers.e}


def _hash(name: str, data: bytes) -> Any:
    """What dkimpy hands the check: a ``HashThrough`` around a hashlib object."""
    return dkim.HashThrough(HASHES[name][0](data))


def _sign(key: rsa.RSAPrivateKey, name: str, data: bytes) -> bytes:
    return key.sign(HASHES[name][0](data).digest(), padding.PKCS1v15(),
                    utils.Prehashed(HASHES[name][1]))


def _modlen(n: int) -> int:
    return (n.bit_length() + 7) // 8


def _encoded(h: Any, n: int) -> int:
    """dkimpy's EMSA-PKCS1-v1_5 encoding of ``h`` for modulus ``n``, as an integer."""
    return int.from_bytes(crypto.EMSA_PKCS1_v1_5_encode(h, _modlen(n)), "big")


def _raw_sign(m: int, e: int, primes: list[int]) -> int:
    """m^d mod prod(primes) for a squarefree modulus of known factors (CRT)."""
    n = math.prod(primes)
    s = 0
    for p in primes:
        sp = 0 if m % p == 0 else pow(m % p, pow(e, -1, p - 1) if p > 2 else 1, p)
        q = n // p
        s += sp * q * pow(q, -1, p)
    return s % n


def test_the_openssl_verify_is_installed_in_both_namespaces() -> None:
    assert crypto.RSASSA_PKCS1_v1_5_verify is dkim.RSASSA_PKCS1_v1_5_verify
    assert crypto.RSASSA_PKCS1_v1_5_verify.__module__ == "bccd.auth.authenticator"
    assert _dkimpy().__module__ == "dkim.crypto"


@pytest.mark.parametrize("name", ["sha256", "sha1"])
@pytest.mark.parametrize("bits", [1024, 2048, 4096])
def test_openssl_verify_agrees_with_dkimpy_on_valid_and_tampered_signatures(
        bits: int, name: str) -> None:
    key, other = _private(bits), _private(bits, 1)
    pk = _pk(key)
    data = b"signed header fields"
    signature = _sign(key, name, data)
    cache = crypto.RSASSA_PKCS1_v1_5_verify.bccd_cache  # type: ignore[attr-defined]
    assert cache(pk["modulus"], pk["publicExponent"]) is not None  # OpenSSL answers

    assert _both(_hash(name, data), signature, pk) == (True, True)
    assert _both(HASHES[name][0](data), signature, pk) == (True, True)  # a bare hashlib object
    assert _both(_hash(name, data), bytearray(signature), pk) == (True, True)

    for at in (0, 1, len(signature) // 2, len(signature) - 1):
        for flip in (0x01, 0x80):
            tampered = bytearray(signature)
            tampered[at] ^= flip
            assert _both(_hash(name, data), bytes(tampered), pk) == (False, False)
    assert _both(_hash(name, data + b"!"), signature, pk) == (False, False)
    assert _both(_hash(name, data), signature, _pk(other)) == (False, False)
    assert _both(_hash(name, data), _sign(other, name, data), pk) == (False, False)
    wrong_hash = "sha1" if name == "sha256" else "sha256"
    assert _both(_hash(wrong_hash, data), signature, pk) == (False, False)


@pytest.mark.parametrize("bits", [1024, 2048])
def test_random_signatures_are_refused_by_both(bits: int) -> None:
    pk = _pk(_private(bits))
    rnd = random.Random(bits)
    modlen = _modlen(pk["modulus"])
    for _ in range(100):
        signature = rnd.randbytes(modlen)
        assert _both(_hash("sha256", b"x"), signature, pk) == (False, False)


def test_a_signature_one_byte_short_agrees_with_dkimpy() -> None:
    """dkimpy reads the signature as an integer, so one whose leading zero byte is missing
    (or which has an extra one) still verifies; OpenSSL wants exactly the modulus length."""
    key = _private(1024)
    pk = _pk(key)
    for i in range(20000):
        data = b"message %d" % i
        signature = _sign(key, "sha256", data)
        if signature[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero byte")
    assert _both(_hash("sha256", data), signature, pk) == (True, True)
    assert _both(_hash("sha256", data), signature[1:], pk) == (True, True)
    assert _both(_hash("sha256", data), b"\x00" + signature, pk) == (True, True)
    assert _both(_hash("sha256", data + b"!"), signature[1:], pk) == (False, False)
    assert _both(_hash("sha256", data), b"", pk) == (False, False)


def test_a_signature_at_or_above_the_modulus_agrees_with_dkimpy() -> None:
    """dkimpy reduces the signature modulo n, so s + n verifies there (OpenSSL refuses a
    signature representative out of range): such inputs go to dkimpy."""
    key = _private(2044)  # a modulus well below 2^(8 * modlen): s + n has the same length
    pk = _pk(key)
    n = pk["modulus"]
    modlen = _modlen(n)
    signature = _sign(key, "sha256", b"data")
    s = int.from_bytes(signature, "big")
    above = (s + n).to_bytes(modlen, "big")
    assert _both(_hash("sha256", b"data"), above, pk) == (True, True)
    assert _both(_hash("sha256", b"other"), above, pk) == (False, False)
    assert _both(_hash("sha256", b"data"), n.to_bytes(modlen, "big"), pk) == (False, False)
    assert _both(_hash("sha256", b"data"), b"\xff" * modlen, pk) == (False, False)


def test_keys_cryptography_refuses_agree_with_dkimpy() -> None:
    """e = 1 (the signature is the encoded digest itself) and e = 2 or even: refused by
    ``cryptography``, answered by dkimpy."""
    key = _private(2048)
    n = _pk(key)["modulus"]
    h = _hash("sha256", b"data")
    encoded = _encoded(h, n).to_bytes(_modlen(n), "big")
    assert _both(h, encoded, {"modulus": n, "publicExponent": 1}) == (True, True)
    assert _both(_hash("sha256", b"x"), encoded, {"modulus": n, "publicExponent": 1}) \
        == (False, False)
    for e in (0, 2, 65536, n, n + 2):
        signature = _sign(key, "sha256", b"data")
        assert _both(h, signature, {"modulus": n, "publicExponent": e}) == (False, False)


def test_keys_openssl_cannot_use_agree_with_dkimpy() -> None:
    """Keys ``cryptography`` accepts but OpenSSL cannot verify with, each with a signature
    dkimpy accepts: an even modulus, a public exponent over 64 bits with a modulus over 3072
    bits, a modulus over 16384 bits."""
    h = _hash("sha256", b"data")
    numbers = _private(4096).private_numbers()
    p, q = numbers.p, numbers.q

    n = 2 * p * q
    signature = _raw_sign(_encoded(h, n), 65537, [2, p, q]).to_bytes(_modlen(n), "big")
    assert _both(h, signature, {"modulus": n, "publicExponent": 65537}) == (True, True)

    e = (1 << 64) + 1
    while math.gcd(e, (p - 1) * (q - 1)) != 1:
        e += 2
    n = p * q
    signature = _raw_sign(_encoded(h, n), e, [p, q]).to_bytes(_modlen(n), "big")
    assert _both(h, signature, {"modulus": n, "publicExponent": e}) == (True, True)

    primes: list[int] = []
    for which in range(8):
        numbers = _private(2048, which).private_numbers()
        primes += [numbers.p, numbers.q]
    primes.append(1048583)  # 65537 does not divide 1048582
    n = math.prod(primes)
    assert n.bit_length() > 16384
    signature = _raw_sign(_encoded(h, n), 65537, primes).to_bytes(_modlen(n), "big")
    assert _both(h, signature, {"modulus": n, "publicExponent": 65537}) == (True, True)


def test_a_modulus_too_small_for_the_digest_raises_as_in_dkimpy() -> None:
    """dkimpy raises DigestTooLargeError (a permerror in ``verify_sig_process``)."""
    n = (1 << 487) + 1  # 61 bytes: one short of a SHA-256 DigestInfo and its padding
    for verify in (_installed(), _dkimpy()):
        with pytest.raises(crypto.DigestTooLargeError):
            verify(_hash("sha256", b"x"), b"\x01" * 61, {"modulus": n, "publicExponent": 3})
    n = (1 << 495) + 1  # 62 bytes: enough
    assert _both(_hash("sha256", b"x"), b"\x01" * 62, {"modulus": n, "publicExponent": 3}) \
        == (False, False)


class _OddHash:
    """A hash object named like SHA-256 with a digest of another length."""

    name = "SHA256"

    def digest(self) -> bytes:
        return b"\x07" * 31


def test_a_digest_of_an_unexpected_length_agrees_with_dkimpy() -> None:
    numbers = _private(2048).private_numbers()
    n = numbers.p * numbers.q
    signature = _raw_sign(_encoded(_OddHash(), n), 65537, [numbers.p, numbers.q])
    pk = {"modulus": n, "publicExponent": 65537}
    assert _both(_OddHash(), signature.to_bytes(_modlen(n), "big"), pk) == (True, True)


def test_an_unknown_hash_raises_as_in_dkimpy() -> None:
    pk = _pk(_private(1024))
    for verify in (_installed(), _dkimpy()):
        with pytest.raises(KeyError):
            verify(dkim.HashThrough(hashlib.sha512(b"x")), b"\x01" * 128, pk)


def test_dkim_verify_with_the_replacement_passes_signed_and_fails_tampered_messages(
        keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return key.record.encode()

    cache = crypto.RSASSA_PKCS1_v1_5_verify.bccd_cache  # type: ignore[attr-defined]
    body = "Hello Bob,\r\n\r\n" + "the numbers are attached.\r\n" * 150  # about 4 KB
    raw = sign(message(body=body), key, "corp.test")
    before = cache.cache_info()
    assert dkim.verify(raw, dnsfunc=dnsfunc)
    after = cache.cache_info()
    assert after.hits + after.misses > before.hits + before.misses  # OpenSSL answered
    assert not dkim.verify(raw.replace(b"numbers are", b"numbers were", 1), dnsfunc=dnsfunc)
    assert not dkim.verify(raw.replace(b"Subject: Quarterly", b"Subject: Yearly"),
                           dnsfunc=dnsfunc)  # the body hash holds: the RSA check fails

    sha1 = sign(message(body=body), Key(b"rsa-sha1", key.private, key.record), "corp.test")
    assert dkim.verify(sha1, dnsfunc=dnsfunc)
    assert not dkim.verify(sha1.replace(b"Subject: Quarterly", b"Subject: Yearly"),
                           dnsfunc=dnsfunc)
