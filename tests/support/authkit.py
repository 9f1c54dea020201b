"""Helpers for the authenticity tests: corpus keys, DNS key records, messages, signing."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO / ".." / "shared" / "corpora"
MAILAUTH = CORPORA / "mailauth"
FLANKER = CORPORA / "flanker"

AUTHSERV_ID = "mx.bccd.test"
CLIENT_IP = "192.0.2.10"


@dataclass(frozen=True)
class Key:
    """A signing key and the DNS TXT record publishing its public half."""

    algorithm: bytes      # dkimpy signature algorithm
    private: bytes        # what dkim.sign takes: PEM for RSA, base64 seed for ed25519
    record: str           # the _domainkey TXT value

    @classmethod
    def rsa_pem(cls, pem: bytes) -> Key:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(b"rsa-sha256", pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode())

    @classmethod
    def ed25519_pem(cls, pem: bytes) -> Key:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        return cls(b"ed25519-sha256", base64.b64encode(seed),
                   "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub).decode())


def corpus_keys() -> dict[str, Key]:
    return {
        "rsa2048": Key.rsa_pem((MAILAUTH / "private-rsa.pem").read_bytes()),
        "ed25519": Key.ed25519_pem((MAILAUTH / "private-ed25519.pem").read_bytes()),
        "rsa512": Key.rsa_pem((MAILAUTH / "private-small.pem").read_bytes()),
        "rsa1024": Key.rsa_pem((MAILAUTH / "dkim-ec" / "private-rsa.key").read_bytes()),
    }


def message(
    from_addr: str = "alice@corp.test",
    *,
    subject: str = "Quarterly numbers",
    body: str = "Hello Bob,\r\n\r\nthe numbers are attached.\r\n",
    extra_headers: tuple[str, ...] = (),
) -> bytes:
    headers = [
        *extra_headers,
        f"From: Alice <{from_addr}>",
        "To: Bob <bob@customer.test>",
        f"Subject: {subject}",
        "Date: Thu, 26 Nov 2026 10:00:00 +0000",
        f"Message-ID: <{hashlib.sha1((from_addr + subject).encode()).hexdigest()}@corp.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def sign(
    raw: bytes,
    key: Key,
    domain: str,
    selector: str = "sel",
    *,
    length: bool = False,
    include_headers: list[bytes] | None = None,
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple"),
) -> bytes:
    """``raw`` with a dkimpy DKIM-Signature prepended."""
    sig = dkim.sign(raw, selector.encode(), domain.encode(), key.private,
                    signature_algorithm=key.algorithm, length=length,
                    include_headers=include_headers, canonicalize=canonicalize)
    return bytes(sig) + raw


def sign_without_from(raw: bytes, key: Key, domain: str, selector: str = "sel") -> bytes:
    """A valid RSA signature whose h= does not list From (dkimpy's sign() refuses that)."""
    d = dkim.DKIM(raw)
    d.signature_algorithm = b"rsa-sha256"
    d.hasher = hashlib.sha256
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    bh = base64.b64encode(hashlib.sha256(canon.canonicalize_body(d.body)).digest())
    include = (b"subject", b"to", b"date")
    fields = [
        (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/simple"),
        (b"d", domain.encode()), (b"s", selector.encode()),
        (b"t", str(int(time.time())).encode()), (b"h", b" : ".join(include)),
        (b"bh", bh), (b"b", b"0" * 60),
    ]
    header = d.gen_header(fields, include, canon, b"DKIM-Signature",
                          parse_pem_private_key(key.private))
    return b"DKIM-Signature: " + bytes(header) + raw
