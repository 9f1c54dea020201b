"""Every periodic pass is done once when several instances run it (SPEC §11: the
collector, the retention passes, the outbox — webhooks — and the quarantine notices run
safely on every instance at once). Two real instances with their own data directories
on one PostgreSQL:

- the maintenance pass (retention and blob collection) runs on one instance at a time,
  about once per ``retention.interval`` for the pair — not once per instance;
- each webhook event is delivered once, though both instances run the outbox;
- copies from an unconfirmed address arriving at both instances at once make one
  quarantine notice.

Mailbox sync (one instance per account, by lease) is shown in
``tests/integration/imap/test_poller.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.integration.scale.helpers import ALICE, hosts
from tests.support.capture_smtp import CaptureSmtp
from tests.support.mail import make_message, send
from tests.support.server import BccdServer
from tests.support.wait import wait_until
from tests.support.web_hooks import Receiver


def _at_once(jobs: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(jobs))

    def go(job: Callable[[], Any]) -> Any:
        barrier.wait(30)
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(go, jobs))


def test_the_maintenance_pass_runs_on_one_instance_at_a_time_once_per_interval(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    interval, watch = 2.0, 16.0
    (a, b), _ = hosts(make_server, pg_url, 2, {"retention": {"interval": "2s", "lease": "5s"}})
    time.sleep(watch)
    passes = sorted((e["started"], e["seconds"], name)
                    for name, srv in (("a", a), ("b", b)) for e in srv.log_events()
                    if e.get("event") == "lifecycle_pass")
    # each instance alone would run one every `interval`: the two together do not double it
    assert 3 <= len(passes) <= watch / (interval * 0.9) + 1, passes
    for (start, seconds, _), (nxt, _, _) in itertools.pairwise(passes):
        assert start + seconds <= nxt, f"passes overlapped: {passes}"


def test_each_webhook_is_delivered_once_though_both_instances_run_the_outbox(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    with Receiver() as hooks:
        (a, b), alice = hosts(make_server, pg_url, 2,
                              {"webhooks": {"url": hooks.url, "secret": "whsec-test"}})
        n = 16
        for i in range(n):
            raw = make_message(frm=f"Alice <{ALICE}>", to="Bob <bob@client.test>",
                               subject=f"Hook {i}", message_id=f"<hook-{i}@acme.test>")
            assert send((a, b)[i % 2].smtp_port, alice["bcc_address"], raw, mail_from=ALICE)[0] == 250

        def stored() -> list[Any]:
            return [h for h in hooks.delivered() if h.event().get("type") == "message.stored"]

        wait_until(lambda: len(stored()) >= n, timeout=60)
        time.sleep(3)  # a second delivery would come within the outbox's polling
        hits = stored()
        assert len(hits) == n and len({h.id for h in hits}) == n
        done = Counter(e.get("event") for srv in (a, b) for e in srv.log_events()
                       if e.get("event") == "outbox_job_done")
        assert done["outbox_job_done"] >= n


def test_copies_at_both_instances_at_once_make_one_quarantine_notice(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    with CaptureSmtp() as capture:
        (a, b), alice = hosts(make_server, pg_url, 2, {
            "auth": {"unverified": "quarantine"}, "outbound": {"port": capture.port}})
        other = "alice@home.test"

        def copy(srv: BccdServer) -> int:
            raw = make_message(frm=f"Alice <{other}>", to="Bob <bob@client.test>",
                               subject="From home", message_id=f"<{uuid.uuid4().hex}@home.test>")
            return send(srv.smtp_port, alice["bcc_address"], raw, mail_from=other)[0]

        assert _at_once([lambda srv=srv: copy(srv) for srv in (a, b) * 4]) == [250] * 8
        wait_until(lambda: capture.messages, timeout=60)
        time.sleep(3)
        notices = [m for m in capture.messages if ALICE in m.rcpt_tos]
        assert len(notices) == 1
        assert len(a.cli("quarantine", "list", ALICE)) == 8
