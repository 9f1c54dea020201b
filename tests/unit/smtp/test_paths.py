"""The fast SMTP path reader agrees with aiosmtpd's own parser wherever it answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from bccd.smtp.paths import simple_path


def aiosmtpd_getaddr(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]


@pytest.mark.parametrize("arg", [
    "<alice@acme.test>", "<Alice.B+tag@Mail-1.Acme.test>", "<a@b>", "<a@1.2.3.4>",
    "<alice@acme.test> SIZE=1234 BODY=8BITMIME", "<alice@acme.test>\tSMTPUTF8",
    "<alice@acme.test>   SIZE=1", "<>", "<> SIZE=10", "<>x", "<o'neil!#$%&*/?=^_`{|}~-@x.test>",
])
def test_simple_paths_read_as_aiosmtpd_reads_them(arg: str) -> None:
    assert simple_path(arg) == aiosmtpd_getaddr(arg)


@pytest.mark.parametrize("arg", [
    "alice@acme.test", " <alice@acme.test>", "<alice@acme.test", "<alice@acme.test>x",
    "<alice@acme.test> (comment) SIZE=1", "<@route:alice@acme.test>", '<"a b"@acme.test>',
    "<alice@[192.0.2.1]>", "<a..b@acme.test>", "<.a@acme.test>", "<a.@acme.test>",
    "<alice@acme.test.>", "<alice@-acme.test>", "<alice@acme-.test>", "<alice@acme..test>",
    "<=?utf-8?q?x?=@acme.test>", "<a.=?utf-8?q?x?=@acme.test>", "<jürgen@münchen.test>",
    "<alice@acme_x.test>", "<alice@acme.test>>", "<alice@@acme.test>", "<a\\b@acme.test>",
    "<alice @acme.test>", "<alice@ acme.test>", "", "<", "<@>", "<a@>", "<@b>",
])
def test_anything_else_is_left_to_aiosmtpd(arg: str) -> None:
    assert simple_path(arg) is None


_ALPHABET = st.sampled_from([*'ab.@<>-_+=?()" \t[]:\\,;é1', "=?", "<>", "a@b.c"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_ALPHABET, max_size=14).map("".join))
def test_agrees_with_aiosmtpd_on_arbitrary_input(arg: str) -> None:
    found = simple_path(arg)
    if found is not None:
        assert found == aiosmtpd_getaddr(arg)


@settings(max_examples=2000, deadline=None)
@given(st.from_regex(r"<[a-z0-9.+=?-]{1,8}@[a-z0-9.-]{1,8}>( [A-Z0-9=]{0,8}){0,2}", fullmatch=True))
def test_agrees_with_aiosmtpd_on_near_misses(arg: str) -> None:
    found = simple_path(arg)
    if found is not None:
        assert found == aiosmtpd_getaddr(arg)
