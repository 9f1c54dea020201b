"""structlog, configured once: JSON (production) or console, context-bound ids
(``bind_contextvars(conn=…, msg=…, account=…)``), stdlib logging bridged through the
same processors so aiosmtpd/uvicorn/alembic lines come out in the same format.

bccd's own events do not travel through ``logging`` (a ``LogRecord``, the caller's frame,
a formatter per line cost more than rendering the line): structlog renders them with the
same processors and writes the line itself, through the one handler installed here — same
stream, same lock as the stdlib records, levels as the stdlib logger of the same name has
them (``filter_by_level`` first: a line below the level costs next to nothing).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bccd.config import LogSettings

_configured = False
# what the last configure_logging installed; loggers cached before a reconfiguration
# follow it too (as they did when every line went through the stdlib handler)
_handler: logging.StreamHandler[Any] | None = None
_chain: list[Any] = []


def _render(logger: Any, method_name: str, event_dict: Any) -> Any:
    for proc in _chain:
        event_dict = proc(logger, method_name, event_dict)
    return event_dict


class _Writer:
    """The end of structlog's chain for one named logger: the rendered line, written by the
    handler ``configure_logging`` installed (the current one, also after a reconfiguration)."""

    __slots__ = ("_stdlib",)

    def __init__(self, name: str) -> None:
        self._stdlib = logging.getLogger(name)

    # what structlog.stdlib's BoundLogger and filter_by_level ask of the wrapped logger
    @property
    def name(self) -> str:
        return self._stdlib.name

    @property
    def disabled(self) -> bool:
        return self._stdlib.disabled

    def getEffectiveLevel(self) -> int:  # noqa: N802 - the stdlib name
        return self._stdlib.getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the stdlib name
        return self._stdlib.isEnabledFor(level)

    def msg(self, line: str) -> None:
        handler = _handler
        if handler is None:
            return
        handler.acquire()
        try:
            stream = handler.stream
            stream.write(line + handler.terminator)
            stream.flush()
        except RecursionError:
            raise
        except Exception:  # as StreamHandler.emit: report on stderr, never raise
            handler.handleError(logging.makeLogRecord({"msg": line, "name": self._stdlib.name}))
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = fatal = exception = msg


def _writer_factory(name: str = "bccd", *args: Any) -> _Writer:
    return _Writer(name)


def configure_logging(settings: LogSettings, *, stream: str = "stderr") -> None:
    global _configured, _handler, _chain
    level = getattr(logging, settings.level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(additional_ignores=[__name__]),  # _render
    ]
    renderer: Any
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, _render],
        logger_factory=_writer_factory,
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
    _handler = handler
    _chain = [*shared, renderer]
    _configured = True


def get_logger(name: str = "bccd") -> Any:
    return structlog.stdlib.get_logger(name)
