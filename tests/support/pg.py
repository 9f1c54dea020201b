"""PostgreSQL for tests: the server named by ``BCCD_TEST_PG_URL`` (``.ci/run`` starts one),
or else a throwaway cluster started here (Debian ``postgresql``; ``initdb`` runs as the
``postgres`` user, never root) and stopped at the end of the session.

``fresh_database(admin_url)`` creates an empty database per test and returns its URL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port, wait_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


TEST_SETTINGS = {"fsync": "off", "max_connections": "300"}


@contextmanager
def cluster(settings: dict[str, str] | None = None, *, env_var: str = "BCCD_TEST_PG_URL",
            prefix: str = "bccd-pg-") -> Iterator[str]:
    """The server named by ``env_var``, or a private cluster with ``settings`` (default: the
    test settings, fsync off) stopped when the block ends."""
    env_url = os.environ.get(env_var)
    if env_url:
        yield env_url
        return
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql) and "
                           "BCCD_TEST_PG_URL is not set")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        os.chmod(base, 0o700)
    port = free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True)
    options = [f"{k}={v}" for k, v in (settings or TEST_SETTINGS).items()]
    proc = subprocess.Popen(
        _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                      "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={base}",
                      *[arg for opt in options for arg in ("-c", opt)]]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 30, proc)
        time.sleep(0.3)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return conninfo.rsplit("/", 1)[0] + f"/{name}", name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
