"""``ingest.cpu``: parsing (and the sender check) in a worker process gives what the
pipeline gets in its own threads; refusals travel as values and become the same errors."""

from __future__ import annotations

import pytest

from bccd.ingest import outcome
from bccd.ingest.cpu import CpuPool, Failure, prepare
from bccd.ingest.parse import parse
from tests.support.mail import make_message


def test_failures_rebuild_the_taxonomy_class() -> None:
    err = Failure.of(outcome.SenderRefused("two From headers", detail="x")).error()
    assert isinstance(err, outcome.SenderRefused)
    assert (err.reason, err.detail) == ("two From headers", "x")
    assert isinstance(Failure("NoSuchError", "?").error(), outcome.TemporaryError)


def test_prepare_in_process_matches_parse() -> None:
    raw = make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>")
    prep = prepare(raw, 512 * 1024, None)
    assert prep.failure is None and prep.mailbox is not None
    assert prep.mailbox.email == "alice@acme.test"
    assert prep.parsed is not None and prep.parsed.msg is None
    assert prep.parsed.to == parse(raw, max_header_size=512 * 1024).to
    refused = prepare(make_message(frm="a@x.test, b@y.test"), 512 * 1024, None)
    assert refused.failure is not None and refused.failure.kind == "SenderRefused"
    too_big = prepare(make_message(extra_headers={"X-Long": "a" * 3000}), 1024, None)
    assert too_big.parsed is None and too_big.failure is not None
    assert too_big.failure.kind == "HeaderTooBig"


@pytest.mark.timeout(60)
async def test_a_worker_process_prepares_the_same() -> None:
    pool = CpuPool(1, None, max_header_size=512 * 1024, budget=30)
    try:
        raw = make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>, c@d.test")
        prep = await pool.prepare(raw, None)
        assert prep.failure is None and prep.parsed is not None
        assert prep.parsed.to == parse(raw, max_header_size=512 * 1024).to
        assert prep.parsed.dedup_key == parse(raw, max_header_size=512 * 1024).dedup_key
    finally:
        pool.close()
