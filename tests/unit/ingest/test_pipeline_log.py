"""What the pipeline logs per message: one info line per copy (``copy_outcome``) with the
verdict in brief; ``auth_verdict`` is an info line only when the verdict refuses."""

from __future__ import annotations

from typing import Any

import pytest

from bccd import replies as R
from bccd.auth.sender import Mailbox
from bccd.auth.verdict import AuthVerdict
from bccd.config import Settings
from bccd.ingest import pipeline as pipeline_module
from bccd.ingest.outcome import Disposition, NotAuthentic, Outcome, SenderRefused
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, Target

MAILBOX = Mailbox(email="alice@corp.test", name="Alice")
ENV = Envelope(mail_from="alice@corp.test", client_ip="192.0.2.1", helo="mail.corp.test")
PASS = AuthVerdict(dkim="pass", spf="none", dmarc="pass", verdict="pass", reason="ok")
FAIL = AuthVerdict(dkim="fail", spf="fail", dmarc="fail", verdict="fail", reason="DMARC fail")


def _pipeline() -> Pipeline:
    return Pipeline(Settings.model_validate({}), None, None)  # type: ignore[arg-type]


class _Log:
    """Stands in for the module's logger (structlog's capture_logs cannot reach a logger
    another test already cached)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Any:
        def emit(event: str, **kw: Any) -> None:
            self.events.append({"event": event, "log_level": level, **kw})
        return emit


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    fake = _Log()
    monkeypatch.setattr(pipeline_module, "log", fake)
    return fake.events


def test_a_passing_verdict_is_a_debug_line_a_failing_one_info(logs: list[dict[str, Any]]) -> None:
    p = _pipeline()
    assert p._accept(PASS, MAILBOX, ENV).verdict == "pass"
    with pytest.raises(NotAuthentic):
        p._accept(FAIL, MAILBOX, ENV)
    assert [(e["event"], e["log_level"], e["verdict"]) for e in logs] == [
        ("auth_verdict", "debug", "pass"), ("auth_verdict", "info", "fail")]


async def test_each_copy_line_carries_the_verdict_it_was_judged_by(
        logs: list[dict[str, Any]]) -> None:
    targets = [Target(f"corp+t{i}@bcc.test", i + 1, 1) for i in range(3)]
    stored = Outcome(Disposition.STORED, R.STORED, message_id=5, thread_id=6)
    err = NotAuthentic(FAIL.reason, verdict=FAIL.as_dict())
    not_authentic = Outcome.from_error(err)
    not_authentic.extra["verdict"] = err.verdict  # as the pipeline keeps it
    before_auth = Outcome.from_error(SenderRefused("not a confirmed address"))
    await _pipeline()._record(targets, [stored, before_auth, stored], ENV, None, MAILBOX, PASS)
    await _pipeline()._record(targets[:1], [not_authentic], ENV, None, MAILBOX, None)
    lines = [{k: e[k] for k in ("rcpt", "outcome", "sender", "auth", "dkim", "spf", "dmarc")}
             for e in logs if e["event"] == "copy_outcome" and e["log_level"] == "info"]
    passed = {"sender": "alice@corp.test", "auth": "pass", "dkim": "pass", "spf": "none",
              "dmarc": "pass"}
    assert lines == [
        {"rcpt": "corp+t0@bcc.test", "outcome": "stored", **passed},
        {"rcpt": "corp+t1@bcc.test", "outcome": "refused", "sender": "alice@corp.test",
         "auth": None, "dkim": None, "spf": None, "dmarc": None},
        {"rcpt": "corp+t2@bcc.test", "outcome": "stored", **passed},
        {"rcpt": "corp+t0@bcc.test", "outcome": "refused", "sender": "alice@corp.test",
         "auth": "fail", "dkim": "fail", "spf": "fail", "dmarc": "fail"},
    ]
