"""Fixtures for the peers' own smoke tests: one OAuth provider and one Dovecot (with the
provider as its token introspection and a SASL socket for Postfix) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("authlib", reason="the OAuth provider is built on Authlib")

from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.oauth_provider import OAuthProvider

REDIRECT_URI = "http://127.0.0.1:8025/oauth/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider() as idp:
        idp.register_client("bccd", "bccd-s3cret", [REDIRECT_URI])
        yield idp


@pytest.fixture(scope="module")
def dovecot(provider: OAuthProvider) -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    with Dovecot(oauth_introspection_url=provider.introspection_url, sasl_socket=True) as server:
        yield server
