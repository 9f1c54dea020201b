"""``bccd [--config PATH] COMMAND …`` — argument parsing and output only; no business rules.

Each command module registers its sub-commands with ``register(subparsers, common)`` and
gives each a handler ``(ctx, args) -> result``. The frame prints the result (``--json``:
one JSON document on stdout, nothing else) and maps errors to exit codes: 0 success,
1 with a one-line error on stderr, 2 on usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bccd.cli.context import Context

Handler = Callable[["Context", argparse.Namespace], Any]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"bccd: usage error: {message}\n")
        raise SystemExit(2)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (or ``--config``'s
    value)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the full one of the command it names (its module imported,
    ``commands.COMMANDS``), a one-line entry for every other command. With ``argv`` None,
    every command in full."""
    from bccd.cli.commands import COMMANDS

    parser = _Parser(prog="bccd", description="Smart Bcc inbound mail server for CRMs")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (or BCCD_CONFIG)")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    loaders = {name: load for name, _, load in COMMANDS}
    if argv is None:
        chosen = list(dict.fromkeys(loaders.values()))
    else:
        wanted = _command_of(argv)
        chosen = [loaders[wanted]] if wanted in loaders else []
    for load in chosen:
        load().register(sub, common)
    for name, help_, _ in COMMANDS:
        if name not in sub.choices:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def _render(result: Any, as_json: bool) -> None:
    if result is None:
        if as_json:
            print(json.dumps({"ok": True}))
        return
    if as_json:
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
        return
    if isinstance(result, str):
        print(result)
    elif isinstance(result, list):
        if not result:
            print("(none)")
        for row in result:
            if isinstance(row, dict):
                print("  ".join(f"{k}={_short(v)}" for k, v in row.items()))
            else:
                print(row)
    elif isinstance(result, dict):
        width = max((len(k) for k in result), default=0)
        for k, v in result.items():
            print(f"{k.ljust(width)}  {_short(v)}")
    else:
        print(result)


def _short(v: Any) -> str:
    if isinstance(v, list | dict):
        return json.dumps(v, default=str, ensure_ascii=False)
    return str(v)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    # after parsing: ``bccd --help`` and a usage error never load settings or the database
    from bccd.cli.context import Context
    from bccd.config import ConfigError
    from bccd.errors import BccdError

    handler: Handler = args.handler
    ctx = Context(config_path=args.config)
    try:
        result = handler(ctx, args)
        _render(result, getattr(args, "json", False))
        return int(getattr(args, "exit_code", 0))
    except (BccdError, ConfigError) as exc:
        sys.stderr.write(f"bccd: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bccd: interrupted\n")
        return 130
    except Exception as exc:  # never a traceback for a person (log.level = debug shows it)
        import logging

        from bccd.log import get_logger

        log = get_logger("bccd.cli")
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            log.exception("command_failed", command=args.command)
        sys.stderr.write(f"bccd: error: unexpected failure: {type(exc).__name__}: {exc}\n")
        return 1
    finally:
        ctx.close()
