"""The ways bccd is installed agree: the Dockerfile, conf/bccd.service's install steps,
the README and the Makefile install the wheel (or the checkout) with the runtime set
(requirements.lock) and never the test set; only ``make test`` and its kin take
requirements-test.lock. The container runs as an unprivileged user with umask 0077,
its data directory a 0700 volume, and publishes the ports bccd listens on.

No Docker engine runs here: these are the image's facts as the Dockerfile states them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = "/var/lib/bccd"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per Dockerfile instruction: comments dropped,
    backslash-continued lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


DOCKERFILE = (REPO / "Dockerfile").read_text()
STAGES = stages(DOCKERFILE)
FINAL = STAGES[-1]


def _args(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args(stage, "ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _pip_installs(commands: str) -> list[list[str]]:
    """Every ``pip install …`` in shell commands (one a line, or joined by ``&&``), as its
    words after ``install``."""
    found: list[list[str]] = []
    for line in commands.replace("\\\n", " ").splitlines():
        for command in re.split(r"&&|;|\|\|", line):
            words = shlex.split(command, comments=True)
            for i, word in enumerate(words):
                if word.endswith("pip") and words[i + 1:i + 2] == ["install"]:
                    found.append(words[i + 2:])
    return found


def _requirement_files(installs: list[list[str]]) -> list[str]:
    return [Path(args[args.index("-r") + 1]).name for args in installs if "-r" in args]


def test_dockerfile_builds_the_wheel_in_one_stage_and_installs_it_in_a_slim_one() -> None:
    assert len(STAGES) >= 2
    build_runs = " ".join(_args(STAGES[0], "RUN"))
    assert re.search(r"python -m build --wheel\b", build_runs)
    assert _args(FINAL, "FROM") == ["python:3.11-slim"]
    assert not any(re.search(r"\bbccd\b", a.split()[0]) for a in _args(FINAL, "COPY")), \
        "the runtime stage takes the wheel, not the source tree"
    assert any(a.startswith("--from=") for a in _args(FINAL, "COPY")), "the wheel comes from the build stage"


def test_dockerfile_installs_the_runtime_set_with_hashes_and_the_wheel_without_deps() -> None:
    installs = _pip_installs(" && ".join(_args(FINAL, "RUN")))
    assert _requirement_files(installs) == ["requirements.lock"]
    lock_install = next(a for a in installs if "-r" in a)
    assert "--require-hashes" in lock_install
    wheel_install = next(a for a in installs if any(w.endswith(".whl") for w in a))
    assert "--no-deps" in wheel_install
    assert "requirements-test.lock" not in DOCKERFILE
    assert not any("-e" in a for a in installs)


def test_container_runs_as_an_unprivileged_user_with_umask_0077() -> None:
    user = _args(FINAL, "USER")[-1]
    assert user not in ("root", "0") and not user.startswith("0:")
    created = " ".join(_args(FINAL, "RUN"))
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", created)
    entrypoint = _args(FINAL, "ENTRYPOINT")[-1]
    assert "umask 0077" in entrypoint and "exec bccd" in entrypoint
    assert _args(FINAL, "CMD")[-1] == '["serve"]'


def test_container_data_directory_is_a_private_volume() -> None:
    assert _env(FINAL)["BCCD_STORAGE__DATA_DIR"] == DATA_DIR
    assert any(DATA_DIR in v for v in _args(FINAL, "VOLUME"))
    assert re.search(rf"install -d -m 0700 -o (\S+) -g \S+ {DATA_DIR}\b", " ".join(_args(FINAL, "RUN")))


def test_container_exposes_the_ports_bccd_listens_on_and_checks_healthz() -> None:
    env = _env(FINAL)
    smtp, http = _port(env["BCCD_SMTP__LISTEN"]), _port(env["BCCD_HTTP__LISTEN"])
    exposed = {int(p) for args in _args(FINAL, "EXPOSE") for p in args.split()}
    assert exposed == {smtp, http}
    assert f"127.0.0.1:{http}/healthz" in _args(FINAL, "HEALTHCHECK")[-1]


def _install_docs() -> str:
    """README and any docs/ page: where the install steps are written for operators."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
    return "\n".join(p.read_text() for p in pages if p.is_file())


def test_readme_container_command_matches_the_dockerfile() -> None:
    runs = re.findall(r"docker run [^`\n]*", _install_docs())
    assert runs, "the README shows how to run the container"
    exposed = {int(p) for args in _args(FINAL, "EXPOSE") for p in args.split()}
    for run in runs:
        words = shlex.split(run)
        published = {int(words[i + 1].rsplit(":", 1)[1]) for i, w in enumerate(words) if w == "-p"}
        volumes = {words[i + 1].split(":")[1] for i, w in enumerate(words) if w == "-v"}
        assert published <= exposed, run
        assert DATA_DIR in volumes, run


def _service_install_steps() -> str:
    """The commands in the unit's header comment (indented under their prose)."""
    unit = (REPO / "conf" / "bccd.service").read_text()
    return "\n".join(line[4:] for line in unit.splitlines() if line.startswith("#   "))


def test_systemd_install_steps_install_the_wheel_with_the_runtime_set_into_execstarts_venv() -> None:
    unit = (REPO / "conf" / "bccd.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)/bin/bccd serve$", unit, re.M)
    assert exec_start is not None
    venv = exec_start.group(1)
    steps = _service_install_steps()
    assert f"python3 -m venv {venv}" in steps
    installs = _pip_installs(steps)
    assert _requirement_files(installs) == ["requirements.lock"]
    assert "--require-hashes" in next(a for a in installs if "-r" in a)
    assert any("--no-deps" in a and any(w.endswith(".whl") for w in a) for a in installs)
    assert "requirements-test.lock" not in unit


def test_readme_install_steps_are_the_service_and_container_steps() -> None:
    """The README's pip commands are the unit's, and take the same two flags as the Dockerfile's."""
    docs = _install_docs()
    readme_installs = _pip_installs(" && ".join(re.findall(r"`([^`]*pip install[^`]*)`", docs)))
    assert readme_installs, "the README shows how to install the wheel"
    assert _requirement_files(readme_installs) == ["requirements.lock"]
    normal = sorted(" ".join(a) for a in readme_installs)
    assert normal == sorted(" ".join(a) for a in _pip_installs(_service_install_steps()))
    docker = _pip_installs(" && ".join(_args(FINAL, "RUN")))
    for flags in (["--require-hashes", "-r"], ["--no-deps"]):
        assert any(all(f in a for f in flags) for a in readme_installs)
        assert any(all(f in a for f in flags) for a in docker)
    assert "requirements-test.lock" not in re.sub(r"make test[^\n]*", "", docs)


MAKE = shutil.which("make")


def _make_dry_run(target: str, venv: Path) -> str:
    """What ``make TARGET`` would run in a fresh clone (every step, nothing run)."""
    if MAKE is None:
        pytest.skip("make is not installed")
    r = subprocess.run([MAKE, "-n", "-B", target, f"VENV={venv}"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_run_installs_the_runtime_set_and_make_test_the_test_set(tmp_path: Path) -> None:
    run = _make_dry_run("run", tmp_path / "venv")
    assert _requirement_files(_pip_installs(run)) == ["requirements.lock"]
    assert "--require-hashes" in run and f"{tmp_path / 'venv'}/bin/bccd serve" in run
    test = _make_dry_run("test", tmp_path / "venv")
    assert _requirement_files(_pip_installs(test)) == ["requirements-test.lock"]
    assert "pytest" in test


def test_make_help_lists_every_target_with_one_line(tmp_path: Path) -> None:
    if MAKE is None:
        pytest.skip("make is not installed")
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    r = subprocess.run([MAKE, "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {m.group(1): m.group(2) for m in re.finditer(r"^\s+make (\S+)\s+(.+)$", r.stdout, re.M)}
    assert set(listed) == targets
    assert all(doc.strip() for doc in listed.values())
