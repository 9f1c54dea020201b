"""The provider presets data file and ``[oauth.<provider>]``/``[oidc]`` validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bccd.config import ConfigError, load_settings
from bccd.mailboxes import presets

SEED = ["gmail", "google_workspace", "microsoft365", "outlook", "yahoo", "icloud", "aol",
        "fastmail", "gandi", "gmx", "mailru", "yandex", "godaddy", "zoho", "zimbra", "qq",
        "netease163", "netease126", "yeah", "mail139", "aliyun", "other", "exchange_activesync"]


def test_every_provider_the_seed_names_has_a_preset_with_a_documentation_page() -> None:
    found = {p.id: p for p in presets.presets()}
    assert set(SEED) <= set(found)
    for p in found.values():
        assert p.docs.startswith("https://")
        if p.imap and not p.host_required:
            assert p.imap_host and p.smtp_host and p.imap_port == 993
    assert found["gmail"].authserv_ids == ("mx.google.com",) and found["gmail"].oauth == "google"
    assert found["microsoft365"].auth == "oauth" and found["microsoft365"].oauth == "microsoft"
    assert not found["exchange_activesync"].imap and "not IMAP" in found["exchange_activesync"].notes


def _load(tmp_path: Path, body: str) -> object:
    f = tmp_path / "bccd.toml"
    f.write_text(body)
    return load_settings(f, {})


def test_google_and_microsoft_need_only_a_client(tmp_path: Path) -> None:
    s = _load(tmp_path, '[oauth.google]\nclient_id = "g"\n[oauth.microsoft]\nclient_id = "m"\n')
    assert s.oauth["google"].token_url == "https://oauth2.googleapis.com/token"  # type: ignore[attr-defined]
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in s.oauth["microsoft"].scopes  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "message"), [
    ('[oauth.corp]\nclient_id = "c"\n', "oauth.corp.authorize_url: required"),
    ('[oauth.google]\nclient_id = "c"\ntoken_url = "http://example.com/t"\n',
     "oauth.google.token_url: must be https://"),
    ('[oauth.google]\nclient_secret = "s"\n', "oauth.google.client_id"),
    ('[oauth.google]\nclient_id = "c"\ncolour = "red"\n', "oauth.google.colour: unknown key"),
    ('[oidc]\nissuer = "ftp://x"\n', "oidc.issuer"),
])
def test_a_bad_oauth_section_is_refused_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _load(tmp_path, body)


def test_a_client_secret_can_come_from_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "bccd.toml"
    f.write_text('[oauth.google]\nclient_id = "g"\n')
    s = load_settings(f, {"BCCD_OAUTH__GOOGLE__CLIENT_SECRET": "from-env"})
    assert s.oauth["google"].client_secret == "from-env"
