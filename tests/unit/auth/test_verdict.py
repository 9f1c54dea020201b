"""``AuthVerdict.as_dict`` is ``dataclasses.asdict`` (dkim_domains as a list), value for
value, and a copy: changing it never changes the verdict."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bccd.auth.dkim import SignatureResult
from bccd.auth.verdict import SKIPPED, AuthVerdict


def _reference(v: AuthVerdict) -> dict[str, Any]:
    d = dataclasses.asdict(v)
    d["dkim_domains"] = list(v.dkim_domains)
    return d


PASS = AuthVerdict(
    dkim="pass", spf="pass", dmarc="pass", arc="none", dkim_domains=("corp.test", "esp.test"),
    spf_domain="corp.test", header_from_domain="corp.test", policy="reject", verdict="pass",
    reason="DMARC pass", results_header="bccd.test; dkim=pass",
    extra={"dkim_signatures": [{"result": "pass", "d": "corp.test", "s": "sel", "a": "x",
                                "reason": ""}],
           "spf_identity": "mailfrom", "dmarc_record": "corp.test", "arc_reason": "",
           "trusted_results": ["relay.test; dkim=pass"], "n": 3, "ratio": 0.5, "ok": True,
           "none": None, "pair": ("a", ("b", 1))})


@pytest.mark.parametrize("verdict", [
    PASS, SKIPPED, AuthVerdict(),
    dataclasses.replace(PASS, extra={"odd": {1, 2}}),                   # not plain: asdict
    dataclasses.replace(PASS, extra={"sig": SignatureResult("pass", "corp.test")}),
    dataclasses.replace(PASS, extra={"nested": {"deep": [{"x": ["y"]}]}}),
])
def test_as_dict_is_asdict(verdict: AuthVerdict) -> None:
    got = verdict.as_dict()
    assert got == _reference(verdict)
    assert list(got) == list(_reference(verdict))
    assert type(got["dkim_domains"]) is list


def test_as_dict_is_a_copy() -> None:
    d = PASS.as_dict()
    d["extra"]["dkim_signatures"][0]["result"] = "fail"
    d["extra"]["trusted_results"].append("forged")
    assert PASS.extra["dkim_signatures"][0]["result"] == "pass"
    assert PASS.extra["trusted_results"] == ["relay.test; dkim=pass"]
