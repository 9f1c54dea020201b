"""SPEC §10: one TOML file, BCCD_<SECTION>__<KEY> overrides, typed and validated."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bccd.config import ConfigError, ensure_secret_key, load_settings, parse_duration, parse_size

pytestmark = pytest.mark.spec("10")


def test_defaults_run_with_no_file() -> None:
    s = load_settings(None, environ={})
    assert s.smtp.listen == "127.0.0.1:2525"
    assert s.http.listen == "127.0.0.1:8025"
    assert s.smtp.bcc_domain == "bcc.localhost"
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/bccd.sqlite3")
    assert s.smtp.max_message_size == 25 * 1024 * 1024
    assert s.smtp.max_header_size == 512 * 1024
    assert s.smtp.max_line_length == 1024 * 1024
    assert s.smtp.max_recipients == 100
    assert s.auth.mode == "dmarc" and s.auth.unverified == "reject"
    assert s.confirm.ttl == 72 * 3600
    assert s.imap.initial_days == 30


def test_file_values_are_read(tmp_path: Path) -> None:
    f = tmp_path / "bccd.toml"
    f.write_text('[smtp]\nlisten = "0.0.0.0:25"\nmax_message_size = "10MiB"\n'
                 '[confirm]\nttl = "15m"\n[database]\nurl = "postgresql://db/bccd"\n')
    s = load_settings(f, environ={})
    assert s.smtp.host_port == ("0.0.0.0", 25)
    assert s.smtp.max_message_size == 10 * 1024 * 1024
    assert s.confirm.ttl == 900
    assert s.database_url == "postgresql://db/bccd"


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "bccd.toml"
    f.write_text('[smtp]\nlisten = "127.0.0.1:2600"\n')
    env = {"BCCD_SMTP__LISTEN": "0.0.0.0:25", "BCCD_SMTP__MAX_RECIPIENTS": "5",
           "BCCD_SMTP__TRUSTED_RELAYS": '["10.0.0.0/8"]', "BCCD_SMTP__LMTP": "true",
           "BCCD_LOG__FORMAT": "json", "BCCD_CONFIG_UNRELATED": "x"}
    s = load_settings(f, environ=env)
    assert s.smtp.listen == "0.0.0.0:25"
    assert s.smtp.max_recipients == 5
    assert s.smtp.trusted_relays == ["10.0.0.0/8"]
    assert s.smtp.lmtp is True
    assert s.log.format == "json"


def test_bccd_config_variable_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text('[smtp]\nbcc_domain = "BCC.Example.COM"\n')
    s = load_settings(None, environ={"BCCD_CONFIG": str(f)})
    assert s.smtp.bcc_domain == "bcc.example.com"


@pytest.mark.parametrize("text,env,expected", [
    ('[smtp]\nmax_message_size = "lots"\n', {}, "smtp.max_message_size: expected a size"),
    ('[confirm]\nttl = "3 fortnights"\n', {}, "confirm.ttl: expected a duration"),
    ('[smtp]\nlisten = "localhost:99999"\n', {}, "smtp.listen: port 99999 is out of range"),
    ('[auth]\nmode = "maybe"\n', {}, "auth.mode: Input should be 'dmarc' or 'off'"),
    ('[smtp]\nnot_a_key = 1\n', {}, "smtp.not_a_key: unknown key"),
    ('[nonsense]\nx = 1\n', {}, "nonsense: unknown key"),
    ('[smtp]\ntrusted_relays = ["10.0.0.300/8"]\n', {}, "smtp.trusted_relays: '10.0.0.300/8' is not an IP network"),
    ('[dns]\nnameservers = ["resolver.example"]\n', {}, "dns.nameservers: 'resolver.example' is not an IP address"),
    ('[http]\npublic_url = "ftp://x"\n', {}, "http.public_url: expected an http:// or https:// URL"),
    ('', {"BCCD_SMTP__MAX_RECIPIENTS": "zero"}, "smtp.max_recipients:"),
    ('[smtp]\nbcc_domain = "bad domain!"\n', {}, "smtp.bcc_domain: invalid domain"),
    ('[smtp\n', {}, "not valid TOML"),
    ('[smtp]\nworkers = -1\n', {}, "smtp.workers: Input should be greater than or equal to 0"),
    ('', {"BCCD_SMTP__WORKERS": "many"}, "smtp.workers:"),
])
def test_bad_values_are_refused_with_key_and_reason(tmp_path: Path, text: str, env: dict, expected: str) -> None:
    f = tmp_path / "bccd.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(f, environ=env)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize("value,seconds", [(90, 90), ("90s", 90), ("15m", 900), ("72h", 259200),
                                           ("30d", 2592000), ("2w", 1209600), ("45", 45)])
def test_durations_with_units(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value,size", [(100, 100), ("512KiB", 524288), ("25MiB", 26214400),
                                        ("1GiB", 1073741824), ("10MB", 10_000_000), ("1k", 1024)])
def test_sizes_with_units(value: object, size: int) -> None:
    assert parse_size(value) == size


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    env = {"BCCD_STORAGE__DATA_DIR": str(tmp_path / "var")}
    first = ensure_secret_key(load_settings(None, environ=env))
    key_file = tmp_path / "var" / "secret_key"
    assert first.security.secret_key and len(first.security.secret_key) >= 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    second = ensure_secret_key(load_settings(None, environ=env))
    assert second.security.secret_key == first.security.secret_key


def test_configured_secret_key_wins_and_old_keys_follow(tmp_path: Path) -> None:
    env = {"BCCD_STORAGE__DATA_DIR": str(tmp_path / "var"), "BCCD_SECURITY__SECRET_KEY": "new",
           "BCCD_SECURITY__OLD_SECRET_KEYS": '["old1", "old2"]'}
    s = ensure_secret_key(load_settings(None, environ=env))
    assert s.secret_keys == ["new", "old1", "old2"]
    assert not (tmp_path / "var" / "secret_key").exists()


def test_smtp_workers_zero_means_one_process_per_cpu(tmp_path: Path) -> None:
    f = tmp_path / "bccd.toml"
    f.write_text("[smtp]\nworkers = 0\n")
    s = load_settings(f, environ={})
    assert s.smtp.process_count == len(os.sched_getaffinity(0))
    f.write_text("")
    assert load_settings(f, environ={}).smtp.process_count == 1
