"""What an operator installs: ``python -m build`` makes an sdist and, from it, a wheel
that carries the templates, static files and migrations. Installed with the runtime set
alone (requirements.lock, hashes checked, then the wheel with ``--no-deps``) into a clean
venv, it answers ``--help``, migrates a new database to the newest revision and serves
its pages, and that venv holds nothing from the test set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from bccd.store.migrate import HEAD
from tests.packaging.test_locks import RUNTIME_LOCK, TEST_TOOLS, read_lock
from tests.support.ports import free_port, wait_port
from tests.support.server import write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.xdist_group("packaging_wheel")]  # one build and one venv for the module

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "bccd"


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without bccd's settings or a path into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BCCD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it (build's default), with the pinned setuptools
    of the test set (no isolation: nothing is fetched). Built from a copy of what the build
    reads — the top-level files and the package — because setuptools writes its work files
    (``bccd.egg-info``, ``bccd-<version>/``) into the source tree, and the checkout is not
    this test's alone."""
    src = tmp_path_factory.mktemp("src")
    for f in REPO.iterdir():
        if f.is_file():
            shutil.copy2(f, src / f.name)
    shutil.copytree(PACKAGE, src / "bccd", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src], cwd=out)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (whl,) = dist.glob("bccd-*.whl")
    return whl


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    (tgz,) = dist.glob("bccd-*.tar.gz")
    return tgz


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the runtime set and the wheel, as conf/bccd.service's steps do."""
    root = tmp_path_factory.mktemp("runtime")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=root)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--require-hashes", "-r", RUNTIME_LOCK], cwd=root, env=_clean_env())
    _run([*pip, "--no-deps", wheel], cwd=root, env=_clean_env())
    return venv


def _package_files(*parts: str) -> set[str]:
    """The checkout's files under bccd/<parts>, as paths inside the package."""
    base = PACKAGE.joinpath(*parts)
    return {p.relative_to(REPO).as_posix() for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


SHIPPED = ("web/templates", "web/static", "migrations")


def test_wheel_carries_templates_static_files_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for parts in SHIPPED:
        expected = _package_files(*parts.split("/"))
        assert expected, parts
        assert sorted(expected - names) == [], parts
    assert "bccd/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "bench/"))]


def test_sdist_carries_the_package_with_its_migrations(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md"} <= names
    for parts in SHIPPED:
        assert sorted(_package_files(*parts.split("/")) - names) == [], parts


def test_installed_wheel_answers_help(venv: Path, tmp_path: Path) -> None:
    r = _run([venv / "bin" / "bccd", "--help"], cwd=tmp_path, env=_clean_env(), timeout=60)
    assert "serve" in r.stdout and "db" in r.stdout
    r = _run([venv / "bin" / "python", "-c", "import bccd; print(bccd.__file__)"], cwd=tmp_path,
             env=_clean_env(), timeout=60)
    assert Path(r.stdout.strip()).is_relative_to(venv), "bccd comes from the wheel, not the checkout"


def test_installed_wheel_migrates_a_new_database_to_the_newest_revision(venv: Path, tmp_path: Path) -> None:
    db = tmp_path / "bccd.sqlite3"
    env = _clean_env(BCCD_DATABASE__URL=f"sqlite:///{db}", BCCD_STORAGE__DATA_DIR=str(tmp_path / "var"))
    _run([venv / "bin" / "bccd", "db", "upgrade", "--json"], cwd=tmp_path, env=env, timeout=120)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'companies'").fetchone() == (1,)


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[str]:
    """``bccd serve`` from the installed wheel on free loopback ports; its base URL."""
    smtp, http = free_port(), free_port()
    config = tmp_path / "bccd.toml"
    write_config(config, {
        "smtp": {"listen": f"127.0.0.1:{smtp}"},
        "http": {"listen": f"127.0.0.1:{http}"},
        "storage": {"data_dir": str(tmp_path / "var")},
        "outbound": {"host": "127.0.0.1", "port": free_port()},
        "log": {"format": "json", "level": "info"},
    })
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([venv / "bin" / "bccd", "--config", config, "serve"], cwd=tmp_path,
                            env=_clean_env(PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_port(http, 60, proc, "bccd serve")
        yield f"http://127.0.0.1:{http}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_installed_wheel_serves_its_pages_and_static_files(served: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        health = httpx.get(f"{served}/healthz", timeout=5)
        if health.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert health.status_code == 200
    login = httpx.get(f"{served}/mail/login", timeout=5)  # a page rendered from the templates
    assert login.status_code == 200 and "<form" in login.text
    css = httpx.get(f"{served}/mail/static/mail.css", timeout=5)
    assert css.status_code == 200 and css.text == (PACKAGE / "web" / "static" / "mail.css").read_text()


def test_runtime_venv_has_exactly_the_runtime_set_and_no_test_tools(venv: Path, tmp_path: Path) -> None:
    r = _run([venv / "bin" / "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
             cwd=tmp_path, env=_clean_env(), timeout=120)
    installed = {canonicalize_name(p["name"]) for p in json.loads(r.stdout)}
    assert sorted(installed & TEST_TOOLS) == []
    assert sorted(installed - set(read_lock(RUNTIME_LOCK)) - {"bccd", "pip", "setuptools"}) == []
    _run([venv / "bin" / "python", "-m", "pip", "check", "--disable-pip-version-check"], cwd=tmp_path,
         env=_clean_env(), timeout=120)
