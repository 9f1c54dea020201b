"""The two pinned sets agree with pyproject.toml.

``requirements.lock`` is what bccd runs on: pyproject's dependencies and what they pull
in. ``requirements-test.lock`` is the same pins plus the ``test`` extra. Both come from
``make lock``; a dependency declared in pyproject.toml and missing from a lock (or pinned
outside its declared range, or still in a lock after pyproject dropped it) fails here
until ``make lock`` has run."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_LOCK = REPO / "requirements.lock"
TEST_LOCK = REPO / "requirements-test.lock"

# never in what bccd runs on, whatever pyproject says
TEST_TOOLS = {"pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist", "playwright", "mypy", "ruff",
              "hypothesis", "schemathesis", "import-linter", "build", "trustme", "dnslib", "pip-tools"}

ROOT = "bccd (pyproject.toml)"  # how pip-compile names pyproject.toml in a "# via" comment


@dataclass
class Pin:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[str, Pin]:
    """``name → Pin`` from pip-compile's output: ``name==version \\``, its ``--hash`` lines
    and its ``# via`` comment (one line, or one ``#   origin`` line per origin)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            current = pins[canonicalize_name(m.group(1))] = Pin(m.group(2))
            in_via = False
        elif current is None:
            continue
        elif m := re.match(r"^\s+--hash=(\S+)", line):
            current.hashes.append(m.group(1))
        elif m := re.match(r"^\s+# via (.+)$", line):
            current.via.append(m.group(1).strip())
        elif re.match(r"^\s+# via$", line):
            in_via = True
        elif in_via and (m := re.match(r"^\s+#   (.+)$", line)):
            current.via.append(m.group(1).strip())
        else:
            in_via = False
    return pins


def requirements(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, specs)}


RUNTIME_DEPS = requirements(PYPROJECT["project"]["dependencies"])
TEST_DEPS = requirements(PYPROJECT["project"]["optional-dependencies"]["test"])


@pytest.fixture(scope="module")
def runtime_lock() -> dict[str, Pin]:
    return read_lock(RUNTIME_LOCK)


@pytest.fixture(scope="module")
def test_lock() -> dict[str, Pin]:
    return read_lock(TEST_LOCK)


def _unpinned(deps: dict[str, Requirement], lock: dict[str, Pin]) -> list[str]:
    """The declared dependencies the lock misses or pins outside the declared range."""
    return [f"{name}: {'missing' if name not in lock else lock[name].version + ' not ' + str(req.specifier)}"
            for name, req in deps.items()
            if name not in lock or not req.specifier.contains(lock[name].version, prereleases=True)]


def test_lock_reader_reads_pins_hashes_and_origins(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("#\n# header\n#\nFoo_Bar==1.2 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
                    "    # via\n    #   -c requirements.lock\n    #   bccd (pyproject.toml)\n"
                    "baz==3.0 \\\n    --hash=sha256:cc\n    # via foo-bar\n\n"
                    "# The following packages are considered to be unsafe in a requirements file:\n"
                    "setuptools==80.0 \\\n    --hash=sha256:dd\n    # via bccd (pyproject.toml)\n")
    assert read_lock(lock) == {
        "foo-bar": Pin("1.2", ["sha256:aa", "sha256:bb"], ["-c requirements.lock", ROOT]),
        "baz": Pin("3.0", ["sha256:cc"], ["foo-bar"]),
        "setuptools": Pin("80.0", ["sha256:dd"], [ROOT]),
    }


def test_every_runtime_dependency_is_pinned_in_both_locks(runtime_lock: dict[str, Pin],
                                                          test_lock: dict[str, Pin]) -> None:
    assert _unpinned(RUNTIME_DEPS, runtime_lock) == [], "run `make lock`"
    assert _unpinned(RUNTIME_DEPS, test_lock) == [], "run `make lock`"


def test_every_test_dependency_is_pinned_in_the_test_lock(test_lock: dict[str, Pin]) -> None:
    assert _unpinned(TEST_DEPS, test_lock) == [], "run `make lock`"


def test_runtime_lock_has_no_test_tools(runtime_lock: dict[str, Pin]) -> None:
    test_only = (set(TEST_DEPS) - set(RUNTIME_DEPS)) | TEST_TOOLS
    assert sorted(test_only & set(runtime_lock)) == []


def test_locks_name_no_dependency_pyproject_has_dropped(runtime_lock: dict[str, Pin],
                                                         test_lock: dict[str, Pin]) -> None:
    """A pin that pip-compile took from pyproject.toml is still declared there."""
    from_pyproject = {name for name, pin in runtime_lock.items() if ROOT in pin.via}
    assert sorted(from_pyproject - set(RUNTIME_DEPS)) == [], "run `make lock`"
    from_pyproject = {name for name, pin in test_lock.items() if ROOT in pin.via}
    assert sorted(from_pyproject - set(RUNTIME_DEPS) - set(TEST_DEPS)) == [], "run `make lock`"


def test_test_lock_keeps_every_runtime_pin(runtime_lock: dict[str, Pin], test_lock: dict[str, Pin]) -> None:
    """Tests run on exactly the versions production runs on."""
    differ = {name: (pin.version, test_lock[name].version if name in test_lock else None)
              for name, pin in runtime_lock.items()
              if name not in test_lock or test_lock[name].version != pin.version}
    assert differ == {}


def test_every_pin_carries_hashes(runtime_lock: dict[str, Pin], test_lock: dict[str, Pin]) -> None:
    """``pip install --require-hashes`` (Dockerfile, systemd steps, make) needs one per pin."""
    assert [n for n, p in runtime_lock.items() if not p.hashes] == []
    assert [n for n, p in test_lock.items() if not p.hashes] == []


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, TEST_LOCK], ids=lambda p: p.name)
def test_locks_are_pip_compile_output_of_pyproject(lock: Path) -> None:
    """Generated by ``make lock`` (not a ``pip freeze``): its command line is in the header,
    with hashes, for this file, from pyproject.toml, and no machine-local index."""
    text = lock.read_text()
    command = next(line for line in text.splitlines() if line.startswith("#    pip-compile "))
    assert "--generate-hashes" in command and f"--output-file={lock.name}" in command
    assert command.rstrip().endswith("pyproject.toml")
    assert ("--extra=test" in command) == (lock == TEST_LOCK)
    assert not re.search(r"^--(extra-)?index-url|^--find-links", text, re.M)
