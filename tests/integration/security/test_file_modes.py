"""Issue #17, item 8: with the default umask the SQLite database, its WAL and the data
directory were 0644/0755 — readable by every account on the host. Everything bccd
writes under the data directory (database, blobs, secret key, backups), and the SQLite
database with its -wal/-shm wherever ``database.url`` puts it, is now its own user's
only — directories 0700, files 0600 — whatever the umask; ``doctor`` names a path that
is not (SPEC §10)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.mail import make_message, send
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("10")


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def open_to_others(root: Path) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            mode = stat.S_IMODE(os.lstat(name).st_mode)
            if mode & 0o077:
                out.append(f"{oct(mode)} {name}")
    return out


@pytest.mark.parametrize("mask", [0o022, 0o000])
@pytest.mark.parametrize("where", ["data_dir", "database_url"])
def test_serve_and_backup_keep_every_file_private_whatever_the_umask(
        make_server: Callable[..., BccdServer], tmp_path: Path, mask: int, where: str) -> None:
    db_dir = tmp_path / f"db-{where}-{mask:o}" / "nested"
    overrides = {"database": {"url": f"sqlite:///{db_dir / 'mail.sqlite3'}"}} \
        if where == "database_url" else None
    with umask(mask):
        srv = make_server(overrides)  # bccd serve creates the data directory and database
        user = srv.setup_user("alice@acme.test")
        raw = make_message(html="<p>hi <img src='cid:logo'></p>",
                           attachments=[("offer.pdf", "application/pdf", b"%PDF-1.4 x" * 100)])
        assert send(srv.smtp_port, user["bcc_address"], raw)[0] == 250
        backup = srv.dir / "backups" / "monday"
        r = srv.cli_proc("backup", str(backup))
        assert r.returncode == 0, r.stderr
    data = srv.dir / "var"
    assert (data / "secret_key").exists()
    assert list((data / "blobs").rglob("*")), "the attachment was stored as a blob"
    db = db_dir / "mail.sqlite3" if where == "database_url" else data / "bccd.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (oct(path.stat().st_mode), path)
    problems = open_to_others(data) + open_to_others(backup)
    if where == "database_url":
        problems += open_to_others(db_dir.parent)
    assert problems == []
    srv.stop()


def test_doctor_names_a_file_that_others_can_read(server: BccdServer) -> None:
    user = server.setup_user("alice@acme.test")
    raw = make_message(attachments=[("offer.pdf", "application/pdf", b"%PDF-1.4 x" * 100)])
    assert send(server.smtp_port, user["bcc_address"], raw)[0] == 250
    blob = next(p for p in (server.dir / "var" / "blobs").rglob("*") if p.is_file())

    def files_finding() -> dict[str, str]:
        r = server.cli_proc("doctor", "--json")
        checks = json.loads(r.stdout)["checks"]
        found = [c for c in checks if c["check"] == "files"]
        assert len(found) == 1, checks
        return found[0]

    assert files_finding()["status"] == "ok"
    blob.chmod(0o644)
    (server.dir / "var").chmod(0o755)
    finding = files_finding()
    assert finding["status"] == "fail"
    assert str(blob) in finding["message"] and "644" in finding["message"]
    assert "chmod" in finding["fix"]
