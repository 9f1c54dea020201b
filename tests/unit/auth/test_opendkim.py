"""Interoperability with an independent signer: OpenDKIM (Debian ``opendkim-tools``).

``opendkim-genkey`` makes the key and its DNS record, ``opendkim-testmsg`` signs. That tool
has no option to choose the algorithm and always signs ``rsa-sha1`` (relaxed/simple), which
RFC 8301 forbids verifiers to accept: the Authenticator therefore ignores the signature
(``policy``), and the cryptographic interoperability is checked through the same DKIM path
with ``accept_rsa_sha1=True``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bccd.auth.dkim import verify_signatures
from tests.support.authkit import CLIENT_IP, message, sign

GENKEY = shutil.which("opendkim-genkey") or shutil.which("opendkim-genkey", path="/usr/sbin")
TESTMSG = shutil.which("opendkim-testmsg") or shutil.which("opendkim-testmsg", path="/usr/sbin")

pytestmark = [pytest.mark.skipif(not (GENKEY and TESTMSG),
                                 reason="Debian package opendkim-tools is not installed"),
              pytest.mark.spec("4.2")]


@pytest.fixture(scope="module")
def opendkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(private key path, TXT record) made by opendkim-genkey for odk._domainkey.corp.test."""
    out = tmp_path_factory.mktemp("opendkim")
    subprocess.run([GENKEY, "-b", "2048", "-d", "corp.test", "-s", "odk", "-D", str(out)],
                   check=True, timeout=60)
    zone = (out / "odk.txt").read_text()
    record = "".join(re.findall(r'"([^"]*)"', zone))
    # the generated record restricts the key to sha256 (h=sha256), but the signer only
    # produces rsa-sha1: publish the key without that restriction
    record = re.sub(r"\bh=[^;]*;\s*", "", record)
    assert record.startswith("v=DKIM1;") and "p=" in record
    return out / "odk.private", record


def opendkim_sign(raw: bytes, key: Path, tmp_path: Path) -> bytes:
    # opendkim-testmsg fstat()s its input: it must be a file, not a pipe
    src = tmp_path / "in.eml"
    src.write_bytes(raw)
    with src.open("rb") as stdin:
        proc = subprocess.run([TESTMSG, "-C", "-d", "corp.test", "-s", "odk", "-k", str(key),
                               "-t", str(tmp_path)], stdin=stdin, capture_output=True,
                              check=True, timeout=60)
    signed = proc.stdout
    assert signed.startswith(b"DKIM-Signature:"), proc.stderr
    return signed


@pytest.fixture
def signed_by_opendkim(dns, opendkim_key, tmp_path) -> bytes:
    key, record = opendkim_key
    dns.add_txt("odk._domainkey.corp.test", record)
    return opendkim_sign(message().replace(b"\r\n", b"\n"), key, tmp_path)


def test_opendkim_signature_verifies_cryptographically(signed_by_opendkim, resolver):
    assert b"a=rsa-sha1" in signed_by_opendkim
    [result] = verify_signatures(signed_by_opendkim, resolver, accept_rsa_sha1=True)
    assert (result.result, result.domain, result.selector) == ("pass", "corp.test", "odk")


def test_opendkim_signature_in_crlf_form_verifies(signed_by_opendkim, resolver):
    crlf = signed_by_opendkim.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    [result] = verify_signatures(crlf, resolver, accept_rsa_sha1=True)
    assert result.result == "pass"


def test_opendkim_signature_tampered_fails(signed_by_opendkim, resolver):
    tampered = signed_by_opendkim.replace(b"attached", b"in Dropbox")
    [result] = verify_signatures(tampered, resolver, accept_rsa_sha1=True)
    assert (result.result, result.reason) == ("fail", "body hash did not verify")


def test_opendkim_rsa_sha1_is_refused_by_policy(signed_by_opendkim, authenticator):
    v = authenticator.evaluate(signed_by_opendkim, header_from="alice@corp.test",
                               client_ip=CLIENT_IP, helo="mail.corp.test",
                               mail_from="alice@corp.test")
    assert (v.verdict, v.dkim) == ("fail", "policy")
    assert "rsa-sha1" in v.reason


def test_dkimpy_signature_with_opendkim_key_passes(dns, opendkim_key, authenticator):
    """The opendkim-genkey key and record, signed rsa-sha256 by dkimpy: a full pass."""
    from tests.support.authkit import Key

    key_path, _ = opendkim_key
    genkey_record = "".join(re.findall(r'"([^"]*)"', (key_path.parent / "odk.txt").read_text()))
    dns.add_txt("odk._domainkey.corp.test", genkey_record)  # with its h=sha256
    pem = key_path.read_bytes()
    raw = sign(message(), Key(b"rsa-sha256", pem, genkey_record), "corp.test", "odk")
    v = authenticator.evaluate(raw, header_from="alice@corp.test", client_ip=CLIENT_IP,
                               helo="mail.corp.test", mail_from="alice@corp.test")
    assert (v.verdict, v.dkim_domains) == ("pass", ("corp.test",))
