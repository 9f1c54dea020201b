"""Start-up times (docs/performance.md, "Start-up"), in one invocation on one machine.

Wall time of whole processes, each the median of ``--n`` runs (after one warm-up run),
taken in turn with a baseline — ``python -c "import sqlalchemy"``, one library bccd
cannot start without — so that a ratio still holds when a shared machine's speed drifts:

  help       ``bccd --help``, exec to exit
  user list  ``bccd user list`` on a small embedded SQLite database, exec to exit
  serve 220  exec of ``bccd serve`` to the SMTP greeting (a TCP connect reads ``220``)
  serve 250  exec of ``bccd serve`` to the first ``250`` to RCPT for a known address
             (a client that connected as early as it could: the ingest path is ready)
  ready      exec of ``bccd serve`` to its ``bccd_ready`` log line (SMTP, HTTP and the
             workers all serving)

    .venv/bin/python -m bench.startup [--n 11]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

BASELINE = [sys.executable, "-c", "import sqlalchemy"]
BCCD = [sys.executable, "-m", "bccd"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.monotonic() - t0


def _read_reply(f: BinaryIO) -> bytes:
    """One SMTP reply (its last line, for a multi-line one)."""
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def _serve(config: Path, port: int, env: dict[str, str], rcpt: str, log: Path) -> dict[str, float]:
    """One start of ``bccd serve``: seconds from exec to 220, to the first RCPT 250 and to
    ``bccd_ready``; then SIGTERM and wait."""
    out: dict[str, float] = {}
    with log.open("wb") as sink:
        t0 = time.monotonic()
        proc = subprocess.Popen([*BCCD, "--config", str(config), "serve"], env=env,
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        while "220" not in out:
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise RuntimeError(f"bccd serve did not answer:\n{log.read_text()[-3000:]}")
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=60)
            except OSError:
                time.sleep(0.002)
                continue
            with conn, conn.makefile("rb") as f:
                greeting = _read_reply(f)
                out["220"] = time.monotonic() - t0
                assert greeting.startswith(b"220"), greeting
                for cmd in (b"EHLO bench.test", b"MAIL FROM:<someone@example.test>",
                            f"RCPT TO:<{rcpt}>".encode()):
                    conn.sendall(cmd + b"\r\n")
                    reply = _read_reply(f)
                assert reply.startswith(b"250"), reply
                out["250"] = time.monotonic() - t0
                conn.sendall(b"QUIT\r\n")
        while b"bccd_ready" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise RuntimeError(f"bccd serve not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.002)
        out["ready"] = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=11, help="counted runs of each (default 11)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bccd-startup-") as tmp:
        d = Path(tmp)
        port = _free_port()
        config = d / "bccd.toml"
        config.write_text(
            f'[storage]\ndata_dir = "{d / "var"}"\n'
            f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "bccd.test"\n'
            f'[http]\nlisten = "127.0.0.1:{_free_port()}"\n'
            # the default auth.mode (dmarc); no DNS query leaves the machine
            '[dns]\nnameservers = ["127.0.0.1"]\n'
            '[log]\nformat = "json"\nlevel = "info"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
        cfg = ["--config", str(config)]
        subprocess.run([*BCCD, *cfg, "company", "create", "Acme", "--slug", "acme"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        user = subprocess.run([*BCCD, *cfg, "user", "create", "alice@acme.test",
                               "--company", "acme", "--json"], env=env, check=True,
                              capture_output=True, text=True)
        rcpt = json.loads(user.stdout)["bcc_address"]
        runs: dict[str, Callable[[], float | dict[str, float]]] = {
            "baseline": lambda: _wall(BASELINE, env),
            "help": lambda: _wall([*BCCD, "--help"], env),
            "user list": lambda: _wall([*BCCD, *cfg, "user", "list"], env),
            "serve": lambda: _serve(config, port, env, rcpt, d / "serve.log"),
        }
        times: dict[str, list[float]] = {}
        for i in range(args.n + 1):  # the first round warms up: not counted
            for name, run in runs.items():
                got = run()
                if i == 0:
                    continue
                for key, value in (got.items() if isinstance(got, dict)
                                   else [(name, got)]):
                    label = name if key == name else f"serve {key}" if key != "ready" else key
                    times.setdefault(label, []).append(value)
        base = statistics.median(times["baseline"])
        print(f"{args.n} runs each, in turn; wall seconds: median (min-max); ratio to the "
              f"baseline's median")
        for label, values in times.items():
            med = statistics.median(values)
            print(f"  {label:<10} {med:6.3f} ({min(values):.3f}-{max(values):.3f})  "
                  f"x{med / base:.2f}")


if __name__ == "__main__":
    main()
