"""SPEC §8 ``backup PATH`` / ``restore PATH``: a snapshot taken while SMTP load goes on
restores, into a new data directory, to exactly the messages acknowledged up to the
snapshot, with their attachments, links and settings — served identically by a new
``bccd serve``; with blobs in files, in the database, or both (a migration under way).
The commands are for the embedded SQLite database; on PostgreSQL the documented
procedure is exercised piece by piece: ``pg_dump`` alone with the blobs in the database,
``pg_dump`` then the blob directory under a hold with blobs in files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.lifecycle.helpers import blob_bytes, blob_dir_of, mail
from tests.support import pg
from tests.support.server import BccdServer, CliError, write_config
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("8")

USERS = ("alice@acme.test", "bob@acme.test")


def _world(srv: BccdServer) -> dict[str, Any]:
    alice = srv.setup_user("alice@acme.test")
    bob = srv.setup_user("bob@acme.test", name="Bob")
    person = srv.cli("person", "create", "--company", "acme", "--name", "Carol",
                     "--email", "carol@client.test")["id"]
    deal = srv.cli("deal", "create", "--company", "acme", "--title", "Renewal",
                   "--person", str(person))
    srv.cli("user", "set", "bob@acme.test", "--sharing", "shared", "--linking", "manual")
    srv.cli("block", "add", "bob@acme.test", "@spam.test")
    return {"alice": alice, "bob": bob, "deal": deal}


def _snapshot(srv: BccdServer) -> dict[str, Any]:
    """Everything a user or operator can list."""
    out: dict[str, Any] = {"users": [srv.cli("user", "show", u) for u in USERS],
                           "persons": srv.cli("person", "list", "--company", "acme"),
                           "deals": srv.cli("deal", "list", "--company", "acme"),
                           "threads": {}}
    for u in USERS:
        for t in srv.cli("mail", "list", u):
            out["threads"][t["thread_id"]] = srv.cli("mail", "show", str(t["thread_id"]))
    out["lists"] = {u: srv.cli("mail", "list", u) for u in USERS}
    return out


def _check_blobs(srv: BccdServer, snap: dict[str, Any]) -> int:
    """Every attachment's blob is there (in either store) and matches its digest."""
    n = 0
    for t in snap["threads"].values():
        for m in t["messages"]:
            for a in m["attachments"]:
                assert hashlib.sha256(blob_bytes(srv, a["sha256"]) or b"").hexdigest() == a["sha256"]
                n += 1
    return n


class Load:
    """Alice and Bob Bcc a message each, with attachments, as fast as SMTP takes them."""

    def __init__(self, srv: BccdServer, world: dict[str, Any]) -> None:
        self.srv, self.world = srv, world
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            who = ("alice", "bob")[i % 2]
            user = self.world[who]
            rcpt = self.world["deal"]["bcc_address"] if i % 5 == 0 else user["bcc_address"]
            subject = f"load {i:04d}"
            atts = [("terms.pdf", "application/pdf", b"the same terms for everyone"),
                    (f"quote-{i}.pdf", "application/pdf", f"quote number {i}".encode())]
            code = mail(self.srv, rcpt, frm=user["email"], to="carol@client.test",
                        subject=subject, attachments=atts)
            if code == 250:
                self.acked.append(subject)
            else:
                self.errors.append(f"{subject}: {code}")

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def _restored(make_server: Callable[..., BccdServer], backup: Path) -> tuple[BccdServer, dict]:
    srv = make_server(start=False)
    result = srv.cli("restore", str(backup))
    srv.start()
    return srv, result


def test_a_backup_under_smtp_load_restores_into_a_new_directory_with_identical_listings(
        make_server: Callable[..., BccdServer], tmp_path: Path) -> None:
    live = make_server()
    world = _world(live)
    with Load(live, world) as load:
        wait_until(lambda: len(load.acked) >= 10, timeout=20, interval=0.05)
        acked_before = set(load.acked)
        made = live.cli("backup", str(tmp_path / "under-load"))
        n = len(load.acked)
        wait_until(lambda: len(load.acked) >= n + 5, timeout=20, interval=0.05)  # the load went on during and after it
    assert load.errors == []
    assert made["format"] == "bccd-backup/1" and made["secret_key"] == "file"
    assert (tmp_path / "under-load").stat().st_mode & 0o777 == 0o700

    srv, result = _restored(make_server, tmp_path / "under-load")
    assert result["warnings"] == [] and result["counts"] == made["counts"]
    got = _snapshot(srv)
    now = _snapshot(live)
    restored = {m["subject"] for t in got["threads"].values() for m in t["messages"]}
    # a consistent cut: everything acknowledged before the backup, nothing never acknowledged
    assert acked_before <= restored <= set(load.acked)
    assert len(restored) == made["counts"]["messages"] < len(load.acked)
    for tid, thread in got["threads"].items():
        assert thread == now["threads"][tid]  # identical to the live server's view
    assert {k: got[k] for k in ("users", "persons", "deals")} == \
           {k: now[k] for k in ("users", "persons", "deals")}
    assert any(link["kind"] == "deal" for t in got["threads"].values() for link in t["links"])
    assert _check_blobs(srv, got) == 2 * len(restored)

    # once the load has stopped, a backup restores to exactly the live listings
    live.cli("backup", str(tmp_path / "quiet"))
    srv2, _ = _restored(make_server, tmp_path / "quiet")
    assert _snapshot(srv2) == _snapshot(live)


def test_restore_refuses_a_non_empty_data_directory_and_backup_an_existing_path(
        make_server: Callable[..., BccdServer], tmp_path: Path) -> None:
    live = make_server(start=False)
    live.cli("company", "create", "Acme")
    live.cli("backup", str(tmp_path / "b"))
    with pytest.raises(CliError, match="not empty: name a new directory"):
        live.cli("backup", str(tmp_path / "b"))
    target = make_server(start=False)
    data_dir = Path(target.sections["storage"]["data_dir"])
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("something of the operator's")
    with pytest.raises(CliError, match="restore needs an empty data directory") as err:
        target.cli("restore", str(tmp_path / "b"))
    assert err.value.code == 1 and str(data_dir) in err.value.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["notes.txt"]  # left untouched
    with pytest.raises(CliError, match="is not a bccd backup"):
        target.cli("restore", str(tmp_path))


def test_a_sqlite_backup_holds_blobs_from_the_database_and_from_files_alike(
        make_server: Callable[..., BccdServer], tmp_path: Path) -> None:
    live = make_server()
    world = _world(live)
    with Load(live, world) as load:
        wait_until(lambda: len(load.acked) >= 4, timeout=20, interval=0.05)
    live.stop()
    live.sections["storage"]["blobs"] = "database"  # half-way to the database: both stores
    write_config(live.config, live.sections)
    live.start()
    for i in range(3):
        assert mail(live, world["alice"]["bcc_address"], frm="alice@acme.test",
                    to="carol@client.test", subject=f"after {i}",
                    attachments=[("a.pdf", "application/pdf", f"new terms {i}".encode()),
                                 ("b.pdf", "application/pdf", f"new quote {i}".encode())]) == 250
    assert load.errors == []
    status = live.cli("blobs", "status")
    assert status["mixed"] and status["files"] > 0 and status["database"] > 0
    made = live.cli("backup", str(tmp_path / "mixed"))
    assert 0 < made["blobs_in_database"] < made["blobs"]
    srv, result = _restored(make_server, tmp_path / "mixed")
    assert result["blobs"] == made["blobs"]
    got = _snapshot(srv)
    assert got == _snapshot(live)
    assert _check_blobs(srv, got) == 2 * sum(len(t["messages"]) for t in got["threads"].values())


@pytest.mark.parametrize("blobs", ["database", "fs"])
def test_on_postgresql_the_documented_procedure_restores_everything(
        make_server: Callable[..., BccdServer], pg_admin_url: str, pg_url: str,
        tmp_path: Path, blobs: str) -> None:
    live = make_server({"storage": {"blobs": blobs}}, database_url=pg_url, start=False)
    live.cli("db", "upgrade")
    live.start()
    world = _world(live)
    with pytest.raises(CliError, match="pg_dump"):
        live.cli("backup", str(tmp_path / "refused"))
    blob_dir, backup = blob_dir_of(live), tmp_path / "pg-backup"
    with Load(live, world) as load:
        wait_until(lambda: len(load.acked) >= 6, timeout=20, interval=0.05)
        # docs/operations.md, "PostgreSQL": with blobs in files, hold, pg_dump, copy the
        # blobs, release; with blobs in the database, pg_dump is all
        backup.mkdir()
        hold = blob_dir / ".hold-backup"
        if blobs == "fs":
            hold.touch()
        acked_before = set(load.acked)
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
        subprocess.run([str(pg.PG_BIN / "pg_dump"), "--format=custom",
                        f"--file={backup / 'bccd.pgdump'}", dsn], check=True)
        if blobs == "fs":
            shutil.copytree(blob_dir, backup / "blobs", ignore=shutil.ignore_patterns(".*"))
            hold.unlink()
        shutil.copy2(Path(live.sections["storage"]["data_dir"]) / "secret_key", backup)
    assert load.errors == []
    files = [p for p in blob_dir.rglob("*") if p.is_file()] if blob_dir.exists() else []
    assert bool(files) == (blobs == "fs")  # on the database, no blob was ever a file
    url, name = pg.fresh_database(pg_admin_url)
    try:
        subprocess.run([str(pg.PG_BIN / "pg_restore"), "--no-owner", f"--dbname={url}",
                        str(backup / "bccd.pgdump")], check=True)
        srv = make_server({"storage": {"blobs": blobs}},
                          database_url=url.replace("postgresql://", "postgresql+psycopg://"),
                          start=False)
        data_dir = Path(srv.sections["storage"]["data_dir"])
        if blobs == "fs":
            shutil.copytree(backup / "blobs", data_dir / "blobs")
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup / "secret_key", data_dir)
        srv.start()
        got, now = _snapshot(srv), _snapshot(live)
        restored = {m["subject"] for t in got["threads"].values() for m in t["messages"]}
        assert acked_before <= restored <= set(load.acked)
        for tid, thread in got["threads"].items():
            assert thread == now["threads"][tid]
        assert got["deals"] == now["deals"] and got["users"] == now["users"]
        assert _check_blobs(srv, got) == 2 * len(restored)
        srv.stop()
    finally:
        pg.drop_database(pg_admin_url, name)
