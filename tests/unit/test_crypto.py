"""Credentials at rest: Fernet under keys derived from security.secret_key, rotation."""

from __future__ import annotations

import pytest

from bccd.crypto import SecretBox, SecretError, derive_fernet_key

pytestmark = pytest.mark.spec("10")


@pytest.mark.spec("7")
def test_round_trip_and_ciphertext_hides_plaintext() -> None:
    box = SecretBox(["k1"])
    token = box.encrypt_json({"password": "hunter2"})
    assert "hunter2" not in token
    assert box.decrypt_json(token) == {"password": "hunter2"}
    assert box.encrypt(b"x") != box.encrypt(b"x")  # random IV


def test_old_keys_still_decrypt_and_rotate_moves_to_current_key() -> None:
    old = SecretBox(["old-key"])
    token = old.encrypt(b"secret")
    rotated_box = SecretBox(["new-key", "old-key"])
    assert rotated_box.decrypt(token) == b"secret"
    fresh = rotated_box.rotate(token)
    assert SecretBox(["new-key"]).decrypt(fresh) == b"secret"
    with pytest.raises(SecretError):
        old.decrypt(fresh)


def test_wrong_key_is_a_clean_error_without_secrets() -> None:
    token = SecretBox(["right"]).encrypt(b"the-password")
    with pytest.raises(SecretError) as exc:
        SecretBox(["wrong"]).decrypt(token)
    assert "the-password" not in str(exc.value) and "wrong" not in str(exc.value)
    with pytest.raises(SecretError):
        SecretBox(["right"]).decrypt("not a token")
    with pytest.raises(SecretError):
        SecretBox(["right"]).decrypt_json(SecretBox(["right"]).encrypt(b"[1, 2]"))


def test_no_key_and_repr() -> None:
    with pytest.raises(SecretError):
        SecretBox(["", ""])
    assert "k1" not in repr(SecretBox(["k1"]))
    assert derive_fernet_key("a") != derive_fernet_key("b")
    assert len(derive_fernet_key("a")) == 44
