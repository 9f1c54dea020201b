"""The command line's frame: the command table matches what the modules register, and a
command imports only its own module (``bccd --help`` imports none)."""

from __future__ import annotations

import argparse
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
