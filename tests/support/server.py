"""A real ``bccd serve`` process for tests: own data directory, free loopback ports,
its own config file; stopped (by PID) by the fixture that started it.

``BccdServer.cli(...)`` runs a CLI command in-process against the same config and
returns the parsed ``--json`` output (or raises ``CliError`` with the exit code and
stderr)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.ports import free_port, wait_port

__all__ = ["free_port", "wait_port"]

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO.parent / "shared" / "corpora"


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (``/proc``; [] once it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CliError(Exception):
    def __init__(self, code: int, stderr: str) -> None:
        super().__init__(f"exit {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


class BccdServer:
    def __init__(self, tmp: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 database_url: str | None = None) -> None:
        self.dir = tmp
        self.smtp_port = free_port()
        self.http_port = free_port()
        sections: dict[str, dict[str, Any]] = {
            "smtp": {"listen": f"127.0.0.1:{self.smtp_port}", "hostname": "bccd.test",
                     "timeout": 30},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "storage": {"data_dir": str(tmp / "var")},
            "auth": {"mode": "off"},
            "log": {"format": "json", "level": "info"},
            "outbound": {"host": "127.0.0.1", "port": free_port()},
        }
        if database_url:
            sections["database"] = {"url": database_url}
        for sec, vals in (overrides or {}).items():
            sections.setdefault(sec, {}).update(vals)
        self.sections = sections
        self.config = tmp / "bccd.toml"
        write_config(self.config, sections)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "serve.log"

    @property
    def bcc_domain(self) -> str:
        return str(self.sections["smtp"].get("bcc_domain", "bcc.localhost"))

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab")
        offset = log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bccd", "--config", str(self.config), "serve"],
            cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_port(self.smtp_port, timeout, self.proc, "bccd serve")
            wait_port(self.http_port, timeout, self.proc, "bccd serve")
            self._wait_ready(offset, timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"bccd serve did not start:\n{self.log()}") from None

    def _wait_ready(self, offset: int, timeout: float) -> None:
        """Until *this* process logged ``bccd_ready``: an open port alone could be
        somebody else's server."""
        if self.sections["log"].get("level") not in ("debug", "info"):
            return
        deadline = time.monotonic() + timeout
        while b"bccd_ready" not in self.log_path.read_bytes()[offset:]:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("bccd serve exited before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bccd serve not ready after {timeout}s")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cli(self, *args: str, json_out: bool = True) -> Any:
        from bccd.cli import main

        argv = ["--config", str(self.config), *args]
        if json_out:
            argv.append("--json")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
        if code != 0:
            raise CliError(code, err.getvalue())
        text = out.getvalue()
        return json.loads(text) if json_out and text.strip() else text

    def cli_proc(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI as a separate process (exit codes, stdout/stderr exactly as a user sees)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
        return subprocess.run(
            [sys.executable, "-m", "bccd", "--config", str(self.config), *args],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=120,
        )

    # conveniences -----------------------------------------------------------------
    def setup_user(self, email: str = "alice@acme.test", company: str = "acme",
                   name: str = "Alice", admin: bool = False) -> dict[str, Any]:
        try:
            self.cli("company", "create", company.title(), "--slug", company)
        except CliError as exc:
            if "already exists" not in exc.stderr:
                raise
        args = ["user", "create", email, "--company", company, "--name", name]
        if admin:
            args.append("--admin")
        return dict(self.cli(*args))
