"""``auth.mode = "dmarc"`` is the default, and ``bccd serve`` starts with default auth and
DNS settings (the system resolver); without any usable resolver it refuses to start with a
one-line configuration error naming ``dns.nameservers``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bccd.config import Settings, load_settings
from tests.support.server import BccdServer, write_config

pytestmark = pytest.mark.spec("4.2")


def _defaults(make_server: Callable[..., BccdServer]) -> BccdServer:
    srv = make_server(start=False)
    srv.sections.pop("auth", None)      # the fixture's default is auth.mode = off
    srv.sections.pop("dns", None)
    write_config(srv.config, srv.sections)
    return srv


def test_dmarc_is_the_default_mode() -> None:
    settings = Settings()
    assert settings.auth.mode == "dmarc"
    assert settings.dns.nameservers == []      # the system resolver


def test_serve_with_default_auth_settings_starts_with_the_system_resolver(
        make_server: Callable[..., BccdServer]) -> None:
    srv = _defaults(make_server)
    assert load_settings(srv.config, environ={}).auth.mode == "dmarc"
    srv.start()
    events = srv.log_events()
    [auth] = [e for e in events if e.get("event") == "auth_mode_dmarc"]
    assert auth["resolver"] == "system" and auth["nameservers"], auth
    assert auth["authserv_id"] == "bccd.test"
    assert not [e for e in events if e.get("event") == "auth_mode_off"]


_NO_RESOLV_CONF = """
import sys
import dns.resolver

def missing(self, f):
    raise dns.resolver.NoResolverConfiguration(f"cannot open {f}")

dns.resolver.Resolver.read_resolv_conf = missing
from bccd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_serve_without_any_resolver_is_a_config_error(
        make_server: Callable[..., BccdServer], tmp_path: Path) -> None:
    srv = _defaults(make_server)
    proc = subprocess.run([sys.executable, "-c", _NO_RESOLV_CONF, "--config", str(srv.config),
                           "serve"], cwd=srv.dir, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "dns.nameservers: " in lines[0] and "/etc/resolv.conf" in lines[0], lines
