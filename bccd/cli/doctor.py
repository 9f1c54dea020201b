"""``bccd doctor`` — check configuration, database, DNS, TLS and mailbox logins (SPEC §8).

Output only; the checks live in :mod:`bccd.doctor`. Prints one line per finding (and the
fix under it), or with ``--json`` one document ``{"ok": bool, "checks": [{check, status,
message, fix}]}``. Exit 1 (with a one-line summary on stderr) when anything must be fixed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bccd.cli.context import Context
from bccd.config import ConfigError, load_settings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check the installation and say what to fix")
    p.set_defaults(handler=doctor)


def doctor(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd import doctor as checks
    from bccd.log import configure_logging

    try:
        settings = load_settings(ctx.config_path)
    except ConfigError as exc:
        findings = [checks.config_failure(str(exc), ctx.config_path)]
    else:
        configure_logging(settings.log.model_copy(update={"level": "warning"}), stream="stderr")
        findings = checks.run_checks(settings)
    failed = [f for f in findings if f.status == checks.FAIL]
    warned = [f for f in findings if f.status == checks.WARN]
    if failed:
        args.exit_code = 1
        sys.stderr.write(f"bccd: error: doctor found {len(failed)} problem(s) to fix\n")
    if args.json:
        return {"ok": not failed, "checks": [f.as_dict() for f in findings]}
    lines = []
    for f in findings:
        lines.append(f"{f.status.upper():<5} {f.check:<12} {f.message}")
        if f.fix and f.status != checks.OK:
            lines.append(f"{'':<18} fix: {f.fix}")
    lines.append(f"{len(failed)} to fix, {len(warned)} warning(s)" if failed or warned else "all good")
    return "\n".join(lines)
