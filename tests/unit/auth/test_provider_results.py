"""``auth.results.provider_dmarc_pass``: a mailbox provider's own DMARC verdict on a synced
message (SPEC §7) is read from the topmost Authentication-Results field only."""

from __future__ import annotations

import pytest

from bccd.auth.results import provider_dmarc_pass

BODY = b"From: Alice <alice@acme.test>\r\nSubject: hi\r\n\r\nhi\r\n"


def msg(*fields: str) -> bytes:
    return b"".join(f"Authentication-Results: {f}\r\n".encode() for f in fields) + BODY


@pytest.mark.parametrize(("raw", "ids", "domain", "expected"), [
    (msg("mx.p.test; dmarc=pass header.from=acme.test"), ["mx.p.test"], "acme.test", True),
    (msg("MX.P.TEST; dmarc=pass (p=reject) header.from=ACME.test"), ["mx.p.test"], "acme.test", True),
    (msg("mx.p.test; dmarc=pass header.from=XN--BCHER-KVA.test"), ["mx.p.test"],
     "xn--bcher-kva.test", True),
    # what cannot be parsed is no verdict (authres reads ASCII only)
    (msg("mx.p.test; dmarc=pass header.from=bücher.test"), ["mx.p.test"], "xn--bcher-kva.test",
     False),
    (msg("mx.p.test; dmarc=pass header.from=acme.test"), [], "acme.test", False),
    (msg("mx.other.test; dmarc=pass header.from=acme.test"), ["mx.p.test"], "acme.test", False),
    (msg("mx.p.test; dmarc=pass header.from=evil.test"), ["mx.p.test"], "acme.test", False),
    (msg("mx.p.test; dmarc=fail header.from=acme.test"), ["mx.p.test"], "acme.test", False),
    (msg("mx.p.test; dkim=pass header.d=acme.test"), ["mx.p.test"], "acme.test", False),
    # a forged field below the provider's own (the topmost) is never read
    (msg("mx.p.test; dmarc=fail header.from=acme.test",
         "mx.p.test; dmarc=pass header.from=acme.test"), ["mx.p.test"], "acme.test", False),
    (msg("mx.other.test; none", "mx.p.test; dmarc=pass header.from=acme.test"),
     ["mx.p.test"], "acme.test", False),
    (msg("not a header at all ;;; ="), ["mx.p.test"], "acme.test", False),
    (BODY, ["mx.p.test"], "acme.test", False),
])
def test_only_the_topmost_field_of_a_listed_provider_counts(raw: bytes, ids: list[str],
                                                            domain: str, expected: bool) -> None:
    assert provider_dmarc_pass(raw, ids, domain) is expected
