"""The ARC draft validation suite (arc-draft-validation-tests.yml) through bccd's ARC path.

Each scenario's ``txt-records`` are served by the loopback DNS server; each message goes
through :func:`bccd.auth.arc.verify_arc` (dkimpy's ``arc_verify`` with our resolver) and the
chain validation status is compared with ``cv``. The suite leaves ``cv`` empty for three
chains that an ARC-Seal already marked ``cv=fail``; RFC 8617 §5.2 makes those ``fail``.

Cases that do not apply are in :data:`NOT_APPLICABLE` with the reason; they still run, as
strict expected failures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bccd.auth.arc import verify_arc
from bccd.auth.dkim import verify_message
from bccd.auth.dns import Resolver
from tests.support.authkit import MAILAUTH
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.spec("4.2")

SUITE = MAILAUTH / "arc" / "arc-draft-validation-tests.yml"

NOT_APPLICABLE: dict[str, str] = {}

_SCENARIOS: list[dict[str, Any]] = []


def scenarios() -> list[dict[str, Any]]:
    if not _SCENARIOS:
        with Path(SUITE).open(encoding="utf-8") as fh:
            _SCENARIOS.extend(yaml.safe_load_all(fh))
    return _SCENARIOS


def _params() -> list[Any]:
    params = []
    for number, scenario in enumerate(scenarios()):
        for name, test in scenario["tests"].items():
            marks = []
            if name in NOT_APPLICABLE:
                marks.append(pytest.mark.xfail(strict=True, reason=NOT_APPLICABLE[name]))
            params.append(pytest.param(number, name, test, id=name, marks=marks))
    return params


def expected_status(cv: str) -> str:
    return (cv or "fail").lower()


@pytest.mark.parametrize(("number", "name", "test"), _params())
def test_arc_validation(dns: DnsTestServer, number: int, name: str,
                        test: dict[str, Any]) -> None:
    for record, value in scenarios()[number]["txt-records"].items():
        dns.add_txt(record, value)
    # the loopback server holds every record the vector needs, so no vector expects a
    # timeout; the limit only has to outlast a busy machine (0.5 s once did not, in a
    # full run with two test workers)
    resolver = Resolver(["127.0.0.1"], port=dns.port, timeout=5.0)
    raw = test["message"].encode("utf-8")
    got = verify_arc(raw, resolver)
    assert got.result == expected_status(test["cv"]), (test.get("description"), got.reason)
    # the authenticator passes the header names its DKIM pass read: never a different answer
    _, names = verify_message(raw, resolver)
    assert verify_arc(raw, resolver, header_names=names) == got


def test_suite_is_complete() -> None:
    names = [p.values[1] for p in _params()]
    assert len(names) == len(set(names)) == 171
    assert set(NOT_APPLICABLE) <= set(names)
