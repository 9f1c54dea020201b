"""SPEC §11: instances on different hosts share only PostgreSQL (and ``secret_key``) — every
byte is in the database (``storage.blobs = "database"``, the default with PostgreSQL).

Real ``bccd serve`` instances, each with its own data directory:

- an attachment filed through one host downloads through another's API and Mail page,
  and no host wrote a blob file;
- two collectors sweep the database in a loop while a third instance files messages
  with the same few attachments and messages are deleted: no attachment a message names
  is ever lost, and nothing unreferenced survives two passes;
- an instance killed with SIGKILL in the middle of a collection pass (its transaction
  stuck on a lock) loses nothing, and the other instance finishes the pass once the dead
  one's lease has run out;
- ``bccd blobs migrate --to database`` killed with SIGKILL in the middle, while the
  instances serve, loses nothing: every attachment still downloads, ``doctor`` reports
  the mixed state, and running it again finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from bccd import doctor
from bccd.config import load_settings
from tests.integration.scale.helpers import (
    ALICE,
    api,
    attachments,
    blob_files,
    blobs_intact,
    hosts,
    lock_waiters,
    mail_page,
    pg,
    reconfigure,
    rows,
    scalar,
)
from tests.support.mail import make_message, send
from tests.support.server import BccdServer
from tests.support.wait import wait_until

MiB = 1 << 20


def _mail(srv: BccdServer, alice: dict[str, Any], *files: tuple[str, str, bytes],
          subject: str = "Files") -> int:
    raw = make_message(frm=f"Alice <{ALICE}>", to="Bob <bob@client.test>", subject=subject,
                       message_id=f"<{uuid.uuid4().hex}@acme.test>", attachments=list(files))
    return send(srv.smtp_port, alice["bcc_address"], raw, mail_from=ALICE)[0]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _downloads(srv: BccdServer, token: str) -> dict[str, str]:
    """sha256 (from the listing) → sha256 of what the API serves, for every attachment."""
    out = {}
    with api(srv, token) as http:
        for att in attachments(srv, token):
            r = http.get(f"/attachments/{att['id']}")
            out[att["sha256"]] = _sha(r.content) if r.status_code == 200 else str(r.status_code)
    return out


# ------------------------------------------------------------------ one host files, another serves
def test_an_attachment_filed_through_one_host_downloads_through_the_others_api_and_mail_page(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    (a, b), alice = hosts(make_server, pg_url)
    big, pdf = os.urandom(3 * MiB + 123), b"%PDF-1.4 the quote"
    assert _mail(a, alice, ("quote.pdf", "application/pdf", pdf),
                 ("data.bin", "application/octet-stream", big)) == 250
    token = alice["api_token"]
    got = {att["filename"]: att for att in attachments(b, token)}
    assert {f: att["size"] for f, att in got.items()} == {"quote.pdf": len(pdf), "data.bin": len(big)}
    with api(b, token) as http:
        r = http.get(f"/attachments/{got['data.bin']['id']}")
        assert r.status_code == 200 and r.content == big
        assert r.headers["content-length"] == str(len(big))
        assert r.headers["content-type"] == "application/octet-stream"
        assert http.get(f"/attachments/{got['quote.pdf']['id']}").content == pdf
    with mail_page(b, token) as page:
        r = page.get(f"/mail/attachments/{got['data.bin']['id']}")
        assert r.status_code == 200 and r.content == big
        assert r.headers["content-disposition"] == 'attachment; filename="data.bin"'
        thread = page.get(f"/mail/threads/{attachments_thread(b, token)}")
        assert thread.status_code == 200 and "quote.pdf" in thread.text
    assert blob_files(a) == [] and blob_files(b) == []  # every byte is in the database
    assert scalar(pg_url, "SELECT count(*) FROM blobs") == 2


def attachments_thread(srv: BccdServer, token: str) -> int:
    with api(srv, token) as http:
        return int(http.get("/threads").json()["threads"][0]["thread_id"])


# ------------------------------------------------------------------ the collector race
COLLECTOR = """
import json, sys, time
from bccd.lifecycle import dbgc
from bccd.store.db import Database
db = Database(sys.argv[1])
passes = deleted = 0
deadline = time.monotonic() + float(sys.argv[2])
while passes == 0 or time.monotonic() < deadline:
    deleted += dbgc.collect(db).deleted
    passes += 1
db.dispose()
print(json.dumps({"passes": passes, "deleted": deleted}))
"""


def test_two_collectors_and_a_host_filing_the_same_attachments_lose_nothing_referenced(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    """Two collector processes (as the passes of two instances, or their erase and delete
    collections, which may run at any time) sweep in a loop; a third instance files
    messages whose attachments come from a pool of six, so they keep being collected and
    written again; a deleter unreferences messages once they were checked."""
    (filer,), alice = hosts(make_server, pg_url, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
    duration = 20.0
    collectors = [subprocess.Popen([sys.executable, "-c", COLLECTOR, pg_url, str(duration)],
                                   stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    pool = [(f"shared-{i}.bin", "application/octet-stream", f"attachment {i} ".encode() * 3000)
            for i in range(6)]
    stop = threading.Event()
    failures: list[str] = []
    checked: list[str] = []          # Message-IDs whose attachments were checked: deletable
    filed = [0]
    lock = threading.Lock()

    def file_and_check(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            att = rnd.choice(pool)
            mid = f"{uuid.uuid4().hex}@acme.test"           # as stored (no brackets)
            raw = make_message(frm=f"Alice <{ALICE}>", to="Bob <bob@client.test>",
                               subject="Round", message_id=f"<{mid}>", attachments=[att])
            code, _ = send(filer.smtp_port, alice["bcc_address"], raw, mail_from=ALICE)
            if code != 250:
                failures.append(f"DATA answered {code}")
                continue
            filed[0] += 1
            n = scalar(pg_url, """SELECT count(*) FROM attachments a JOIN messages m
                                  ON m.id = a.message_id JOIN blobs b ON b.sha256 = a.sha256
                                  WHERE m.message_id = :mid""", mid=mid)
            if n != 1:
                failures.append(f"{mid}: its attachment is not stored right after 250")
            with lock:
                checked.append(mid)

    def delete_checked() -> None:
        rnd = random.Random(7)
        while not stop.is_set():
            time.sleep(rnd.uniform(0.02, 0.2))
            with lock:  # every checked message: its attachment may have no other now
                victims, checked[:] = list(checked), []
            if victims:
                with pg(pg_url) as conn:
                    conn.execute(text("DELETE FROM messages WHERE message_id = ANY(:v)"),
                                 {"v": victims})
                    conn.commit()

    threads = [threading.Thread(target=file_and_check, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=delete_checked))
    for t in threads:
        t.start()
    results = [p.communicate(timeout=duration + 120)[0] for p in collectors]
    stop.set()
    for t in threads:
        t.join(120)
    swept = [json.loads(out.strip().splitlines()[-1]) for out in results]
    assert failures == []
    # blobs were collected and written again many times: the race was exercised
    assert filed[0] > 50 and sum(s["deleted"] for s in swept) > 10, (filed, swept)
    assert blobs_intact(pg_url) == []            # nothing a message names was lost …
    # the deleter may have taken every message the race filed: one more after it, with an
    # attachment the collectors have been deleting and the filers writing again, so there
    # is always something to download
    raw = make_message(frm=f"Alice <{ALICE}>", to="Bob <bob@client.test>", subject="After",
                       message_id=f"<{uuid.uuid4().hex}@acme.test>", attachments=[pool[0]])
    assert send(filer.smtp_port, alice["bcc_address"], raw, mail_from=ALICE)[0] == 250
    downloads = _downloads(filer, alice["api_token"])
    assert downloads and all(k == v for k, v in downloads.items())
    # … and nothing unreferenced survives two passes
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COLLECTOR, pg_url, "0"], check=True, env=env,
                       capture_output=True)
    assert scalar(pg_url, """SELECT count(*) FROM blobs b WHERE NOT EXISTS
                             (SELECT 1 FROM attachments a WHERE a.sha256 = b.sha256)""") == 0


# ------------------------------------------------------------------ kill -9 mid-pass
def _unreferenced_blobs(pg_url: str, n: int) -> list[str]:
    digests = []
    with pg(pg_url) as conn:
        for i in range(n):
            data = f"orphan {i} {uuid.uuid4()}".encode()
            d = _sha(data)
            conn.execute(text("INSERT INTO blobs (sha256, size, chunk_size, created_at) "
                              "VALUES (:d, :s, 1048576, now())"), {"d": d, "s": len(data)})
            conn.execute(text("INSERT INTO blob_chunks (sha256, n, data) VALUES (:d, 0, :b)"),
                         {"d": d, "b": data})
            digests.append(d)
        conn.commit()
    return sorted(digests)


def _orphans(pg_url: str) -> int:
    return int(scalar(pg_url, """SELECT count(*) FROM blobs b WHERE NOT EXISTS
                                 (SELECT 1 FROM attachments a WHERE a.sha256 = b.sha256)"""))


def test_a_host_killed_in_the_middle_of_a_collection_pass_loses_nothing_and_another_finishes(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    fast = {"retention": {"interval": "1s", "lease": "5s"}}
    (a, b), alice = hosts(make_server, pg_url, 2, fast, start=False)
    orphans = _unreferenced_blobs(pg_url, 1200)           # three batches of 500
    stuck = orphans[700]                                  # in the second batch
    with pg(pg_url) as holder:
        holder.begin()
        holder.execute(text("SELECT 1 FROM blob_chunks WHERE sha256 = :d FOR UPDATE"), {"d": stuck})
        a.start()
        for i in range(3):
            assert _mail(a, alice, (f"kept-{i}.bin", "application/octet-stream",
                                    os.urandom(40_000))) == 250
        # the first batch is deleted and committed; the second waits on our lock
        wait_until(lambda: _orphans(pg_url) <= 700 and lock_waiters(pg_url) > 0, timeout=60)
        a.kill9()
        holder.rollback()
    b.start()
    assert _mail(b, alice, ("after.bin", "application/octet-stream", os.urandom(40_000))) == 250
    wait_until(lambda: _orphans(pg_url) == 0, timeout=90)
    assert blobs_intact(pg_url) == []
    downloads = _downloads(b, alice["api_token"])
    assert len(downloads) == 4 and all(k == v for k, v in downloads.items())
    assert scalar(pg_url, """SELECT count(*) FROM blobs b WHERE b.size > 0 AND NOT EXISTS
                             (SELECT 1 FROM blob_chunks c WHERE c.sha256 = b.sha256)""") == 0
    passes = [e for e in b.log_events() if e.get("event") == "lifecycle_pass"]
    assert passes and sum(e["blobs"]["deleted"] for e in passes) >= 1


# ------------------------------------------------------------------ kill -9 mid-migration
def test_a_migration_killed_in_the_middle_loses_nothing_and_running_it_again_finishes(
        make_server: Callable[..., BccdServer], pg_url: str) -> None:
    (a, b), alice = hosts(make_server, pg_url, 2, {"storage": {"blobs": "fs"},
                                                    "retention": {"blob_grace": "0s"}},
                          start=False)
    a.start()
    contents = [os.urandom(30_000) for _ in range(24)]
    for i, data in enumerate(contents):
        assert _mail(a, alice, (f"f{i}.bin", "application/octet-stream", data)) == 250
    assert len(blob_files(a)) == 24
    a.stop()
    # every host moves to the database; a's files are now reachable from a only
    for srv in (a, b):
        reconfigure(srv, storage={"blobs": "database"})
        srv.start()
    token = alice["api_token"]
    assert set(_downloads(b, token).values()) == {"404"}
    digests = sorted(_sha(c) for c in contents)
    with pg(pg_url) as holder:
        holder.begin()            # a blob row of ours, not committed: the copy waits on it
        holder.execute(text("INSERT INTO blobs (sha256, size, chunk_size, created_at) "
                            "VALUES (:d, 0, 1048576, now())"), {"d": digests[10]})
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCCD_")}
        migration = subprocess.Popen(
            [sys.executable, "-m", "bccd", "--config", str(a.config), "blobs", "migrate",
             "--to", "database", "--json"], cwd=a.dir, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: lock_waiters(pg_url) > 0, timeout=60)
        finally:
            migration.kill()
            migration.wait()
        holder.rollback()
    assert migration.returncode == -9
    # the instances served on: new mail, and every old attachment from a (either store)
    assert _mail(b, alice, ("new.bin", "application/octet-stream", b"while migrating")) == 250
    served = _downloads(a, token)
    assert len(served) == 25 and all(k == v for k, v in served.items())
    status = a.cli("blobs", "status")
    assert status["mixed"] and status["database"] == 11 and status["files"] == 24
    [finding] = doctor.check_blobs(load_settings(a.config))
    assert finding.status == "warn" and "bccd blobs migrate --to database" in finding.fix
    [finding] = doctor.check_blobs(load_settings(b.config))   # b has none of a's files
    assert finding.status == "fail" and "neither store" in finding.message

    done = a.cli("blobs", "migrate", "--to", "database")
    assert done["left"] == {"fs": 0, "database": 25} and done["damaged"] == []
    assert done["copied"] == 14 and blob_files(a) == []
    served = _downloads(b, token)
    assert len(served) == 25 and all(k == v for k, v in served.items())
    assert doctor.check_blobs(load_settings(b.config))[0].status == "ok"
    assert rows(pg_url, "SELECT count(*) FROM blobs")[0][0] == 25
    assert blobs_intact(pg_url) == []


@pytest.fixture(autouse=True)
def _no_environment_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("BCCD_") and "__" in k]:
        monkeypatch.delenv(k)
