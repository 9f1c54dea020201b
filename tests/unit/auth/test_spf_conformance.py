"""The RFC 7208 (openspf.org 2014.04) SPF test suite through bccd's SPF path.

Each scenario's ``zonedata`` is served by the loopback DNS server (so the queries really go
over UDP/TCP through ``bccd.auth.dns.Resolver`` and the pyspf hook), each test is checked
with :func:`bccd.auth.spf.check_spf`. Zone data follows the suite's driver conventions:
``SPF`` records are also published as ``TXT`` unless the name lists ``TXT`` records
itself, ``TXT: NONE`` only suppresses that, and ``TIMEOUT`` makes every query for the
name go unanswered except for record types listed before it.

Cases that do not apply are in :data:`NOT_APPLICABLE` with the reason; they still run, as
strict expected failures, so a fixed deviation shows up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bccd.auth.dns import Resolver
from bccd.auth.spf import check_spf
from tests.support.authkit import MAILAUTH
from tests.support.dnsserver import DnsTestServer
from tests.unit.conftest import RESOLVER_TIMEOUT

pytestmark = pytest.mark.spec("4.2")

SUITE = MAILAUTH / "spf" / "rfc7208-tests.yml"

NOT_APPLICABLE: dict[str, str] = {
    "ptr-cname-loop": (
        "the CNAME loop reaches dnspython as a real DNS answer, which it rejects, so the "
        "A lookup of the PTR name is a DNS error; pyspf turns any DNS error during the ptr "
        "mechanism into temperror instead of skipping that name (RFC 7208 §5.5). pyspf's "
        "own suite driver resolves the loop in-process and never sees an error"
    ),
}


def _load() -> list[Any]:
    with Path(SUITE).open(encoding="utf-8") as fh:
        scenarios = list(yaml.safe_load_all(fh))
    params = []
    for number, scenario in enumerate(scenarios):
        for name, test in scenario["tests"].items():
            marks = []
            if name in NOT_APPLICABLE:
                marks.append(pytest.mark.xfail(strict=True, reason=NOT_APPLICABLE[name]))
            params.append(pytest.param(number, name, test, id=name, marks=marks))
    return params


_SCENARIOS: list[dict[str, Any]] = []


def scenario(number: int) -> dict[str, Any]:
    if not _SCENARIOS:
        with Path(SUITE).open(encoding="utf-8") as fh:
            _SCENARIOS.extend(yaml.safe_load_all(fh))
    return _SCENARIOS[number]


def load_zone(server: DnsTestServer, zonedata: dict[str, list[Any]]) -> None:
    """Serve a suite ``zonedata`` mapping (see the module docstring for its conventions)."""
    for name, items in zonedata.items():
        spf_values: list[Any] = []
        has_txt = False
        answered: list[str] = []
        timed_out = False
        for item in items:
            if item == "TIMEOUT":
                timed_out = True
                break  # later records are never reached
            [(rtype, value)] = item.items()
            rtype = rtype.upper()
            if rtype == "TXT":
                has_txt = True
            if value == "NONE":
                continue
            answered.append(rtype)
            if rtype == "SPF":
                spf_values.append(value)
            server.add(name, rtype, value)
        if timed_out:
            server.timeout(name, except_types=answered)
        elif not has_txt:
            for value in spf_values:
                server.add(name, "TXT", value)


@pytest.mark.parametrize(("number", "name", "test"), _load())
def test_rfc7208(dns: DnsTestServer, number: int, name: str, test: dict[str, Any]) -> None:
    load_zone(dns, scenario(number)["zonedata"])
    resolver = Resolver(["127.0.0.1"], port=dns.port, timeout=RESOLVER_TIMEOUT)
    got = check_spf(resolver, client_ip=test["host"], mail_from=test["mailfrom"],
                    helo=test["helo"], default_explanation="DEFAULT")
    expected = test["result"]
    allowed = expected if isinstance(expected, list) else [expected]
    assert got.result in allowed, f"{test.get('description', '')} spec {test.get('spec')}"
    if "explanation" in test:
        assert got.explanation == test["explanation"]


def test_suite_is_complete() -> None:
    assert len(_load()) == 200
    assert set(NOT_APPLICABLE) <= {p.values[1] for p in _load()}
