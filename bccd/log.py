"""structlog, configured once: JSON (production) or console, context-bound ids
(``bind_contextvars(conn=…, msg=…, account=…)``), stdlib logging bridged through the
same processors so aiosmtpd/uvicorn/alembic lines come out in the same format."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bccd.config import LogSettings

_configured = False


def configure_logging(settings: LogSettings, *, stream: str = "stderr") -> None:
    global _configured
    level = getattr(logging, settings.level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr if stream == "stderr" else sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_bccd", False):
            root.removeHandler(h)
    handler._bccd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "mail.log", "uvicorn.access", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    _configured = True


def get_logger(name: str = "bccd") -> Any:
    return structlog.stdlib.get_logger(name)
