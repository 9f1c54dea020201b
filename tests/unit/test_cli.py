"""The command line's frame: the command table matches what the modules register, a
command imports only its own module (``bccd --help`` imports none), and ``bccd user list``
loads no more than a listing needs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from bccd.cli import _command_of, build_parser
from bccd.cli.commands import COMMANDS

pytestmark = pytest.mark.spec("8")


def test_the_command_table_is_what_the_modules_register() -> None:
    full = build_parser(None)
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    listed = [(c.dest, c.help) for c in sub._choices_actions]
    assert listed == [(name, help_) for name, help_, _ in COMMANDS]


@pytest.mark.parametrize(("argv", "command"), [
    (["--config", "x.toml", "user", "list"], "user"),
    (["--json", "mail"], "mail"),
    (["--help"], None),
    ([], None),
])
def test_the_command_is_the_first_word_that_is_not_an_option(argv: list[str],
                                                            command: str | None) -> None:
    assert _command_of(argv) == command


def test_help_loads_no_command_module_and_a_command_only_its_own() -> None:
    probe = ("import sys; from bccd.cli import build_parser; build_parser({argv!r}); "
             "print(sorted(m for m in sys.modules if m.startswith(('bccd.cli.', 'sqlalchemy'))"
             " and m != 'bccd.cli.commands' and not m.startswith('sqlalchemy.')))")
    def loaded(argv: list[str]) -> list[str]:
        out = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True,
                             text=True, check=True)
        return eval(out.stdout)  # a list literal printed by the probe

    assert loaded(["--help"]) == []
    assert [m for m in loaded(["user", "list"]) if m.startswith("bccd.cli.")] == [
        "bccd.cli.context", "bccd.cli.user"]


# a whole `bccd` process: writes the modules it ended with to argv[1], then exits as bccd
_RUN_AND_LIST = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from bccd.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

# what listing users has no use for: the fronts, the ingest path, mail and web libraries,
# the migrations (the database is current)
_NOT_FOR_A_LISTING = (
    "fastapi", "starlette", "uvicorn", "jinja2", "aiosmtpd", "aiosmtplib", "dkim", "spf",
    "authres", "dns", "nh3", "alembic", "imapclient", "prometheus_client", "bccd.web",
    "bccd.smtp", "bccd.ingest", "bccd.imap", "bccd.compose", "bccd.auth", "bccd.linking",
    "bccd.lifecycle", "bccd.notify", "bccd.mailboxes", "bccd.tracking", "bccd.service",
    "bccd.startup", "bccd.doctor",
)


def test_user_list_loads_only_what_a_listing_needs(tmp_path) -> None:
    config = tmp_path / "bccd.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "var"}"\n')
    listed = tmp_path / "modules.json"

    def run(*argv: str) -> list[str]:
        subprocess.run([sys.executable, "-c", _RUN_AND_LIST, str(listed), "--config",
                        str(config), *argv], capture_output=True, text=True, check=True)
        return list(json.loads(listed.read_text()))

    run("db", "upgrade")
    loaded = run("user", "list", "--json")
    assert "sqlalchemy" in loaded and "bccd.store.models" in loaded  # it did read users
    assert [m for m in loaded
            if any(m == p or m.startswith(p + ".") for p in _NOT_FOR_A_LISTING)] == []
