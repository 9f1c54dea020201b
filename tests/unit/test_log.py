"""bccd's events and stdlib records come out of the one handler in the same format."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from bccd import log as bccd_log
from bccd.config import LogSettings


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    yield io.StringIO()
    for h in list(root.handlers):
        if getattr(h, "_bccd", False):
            root.removeHandler(h)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _configure(out: io.StringIO, fmt: str, level: str) -> None:
    """``configure_logging`` with ``out`` as stderr (its handler keeps the stream)."""
    real, sys.stderr = sys.stderr, out
    try:
        bccd_log.configure_logging(LogSettings(format=fmt, level=level))
    finally:
        sys.stderr = real


def test_events_and_stdlib_records_share_format_and_stream(out: io.StringIO) -> None:
    _configure(out, "json", "info")
    structlog.contextvars.bind_contextvars(conn=7)
    log = bccd_log.get_logger("bccd.test")
    log.info("copy_outcome", rcpt="a@b.test", n=1)
    log.debug("hidden")
    logging.getLogger("mail.log").warning("peer %s", "x")
    logging.getLogger("uvicorn.error").info("started")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third, fourth = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("event", "rcpt", "n", "conn", "level", "logger")} == {
        "event": "copy_outcome", "rcpt": "a@b.test", "n": 1, "conn": 7, "level": "info",
        "logger": "bccd.test"}
    assert str(first["timestamp"]).endswith("Z")
    assert (second["event"], second["level"], second["logger"], second["conn"]) == \
        ("peer x", "warning", "mail.log", 7)
    assert (third["event"], third["logger"]) == ("started", "uvicorn.error")
    assert fourth["level"] == "error" and "ValueError: boom" in str(fourth["exception"])


def test_a_reconfiguration_reaches_loggers_already_used(out: io.StringIO) -> None:
    _configure(out, "console", "info")
    log = bccd_log.get_logger("bccd.test")
    log.info("console_line")
    _configure(out, "json", "warning")
    log.info("not_shown")
    log.warning("json_line")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "console_line" in lines[0] and not lines[0].startswith("{")
    assert json.loads(lines[1])["event"] == "json_line"
