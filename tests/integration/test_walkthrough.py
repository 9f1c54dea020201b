"""README's first hour, run as written: the commands of "A first Smart Bcc copy, end to
end" against a real ``bccd serve`` on a new data directory, as a newcomer types them.

What a person would change by hand is all this test changes: the ports (the suite runs
servers side by side; the same ``BCCD_SMTP__LISTEN``/``BCCD_HTTP__LISTEN`` reach every
command), ``make run`` is the ``bccd serve`` it ends in, and the placeholders the README
marks with ``…`` (a Smart Bcc address, an id) take the values the commands before printed.
The newcomer must reach a filed copy on the Mail page within five minutes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port, wait_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.spec("8"), pytest.mark.skipif(not shutil.which("swaks"),
                                                         reason="swaks is installed by .ci/run")]

ROOT = Path(__file__).resolve().parents[2]
BCCD = str(Path(sys.executable).with_name("bccd"))
BUDGET = 300.0  # seconds from `make run` to the filed copy on the Mail page


def _blocks() -> list[list[str]]:
    """The shell blocks of the walk-through, as commands (continuations joined, comments
    and the ``#   output`` lines dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### A first Smart Bcc copy, end to end", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section, re.S):
        joined = body.replace("\\\n", " ")
        cmds = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
        blocks.append([c for c in cmds if c and not c.startswith("#")])
    return blocks


class Newcomer:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.smtp_port, self.http_port = free_port(), free_port()
        self.env = {**os.environ,
                    "BCCD_SMTP__LISTEN": f"127.0.0.1:{self.smtp_port}",
                    "BCCD_HTTP__LISTEN": f"127.0.0.1:{self.http_port}"}
        self.env.pop("BCCD_CONFIG", None)

    def argv(self, command: str) -> tuple[list[str], dict[str, str]]:
        env = dict(self.env)
        words = shlex.split(command)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if words[:1] == [".venv/bin/bccd"]:
            words[0] = BCCD
        if words[:1] == ["swaks"]:
            words = [w.replace("127.0.0.1:2525", f"127.0.0.1:{self.smtp_port}") for w in words]
        return words, env

    def run(self, command: str) -> str:
        if command.startswith("export "):
            key, _, value = command.removeprefix("export ").partition("=")
            self.env[key] = value
            return ""
        words, env = self.argv(command)
        done = subprocess.run(words, cwd=self.cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout


def test_a_newcomer_follows_the_readme_to_a_filed_copy_on_the_mail_page(tmp_path: Path) -> None:
    started = time.monotonic()
    me = Newcomer(tmp_path)
    first, linking = _blocks()
    assert first == ["BCCD_AUTH__MODE=off make run", ".venv/bin/bccd quickstart"]
    words, env = me.argv(first[0].replace("make run", ".venv/bin/bccd serve"))
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(words, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(me.http_port, 60, server, "bccd serve")
        wait_until(lambda: "no_company_yet" in (tmp_path / "serve.log").read_text(), timeout=30)
        me.env["BCCD_AUTH__MODE"] = "off"  # the second terminal, as the first was started
        printed = me.run(first[1])
        link = re.search(r"^\s+(http://\S+/mail/login/link/\S+)$", printed, re.M)
        swaks = re.search(r"^\s+(swaks .*)$", printed, re.M)
        assert link and swaks, printed
        assert "250 2.0.0 Message accepted" in me.run(swaks.group(1))
        with httpx.Client(timeout=30) as browser:
            page = browser.get(link.group(1))
            assert page.status_code == 200 and "Sign in" in page.text
            token = link.group(1).rsplit("/", 1)[1]
            signed = browser.post(link.group(1), data={"token": token}, follow_redirects=True)
            assert signed.status_code == 200 and signed.url.path == "/mail"
            assert wait_until(lambda: "Hello Bob" in browser.get(
                f"http://127.0.0.1:{me.http_port}/mail").text, timeout=30)
        assert time.monotonic() - started < BUDGET

        # persons, deals and linking: the second block, placeholders filled in
        values: dict[str, str] = {}
        for command in linking:
            if "acme-inc+k3j…@bcc.localhost" in command:
                command = command.replace("acme-inc+k3j…@bcc.localhost", values["bcc"])
            if "--person 2" in command:
                command = command.replace("--person 2", f"--person {values['person']}")
            out = me.run(command)
            if "user create" in command:
                values["bcc"] = json.loads(out)["bcc_address"]
            elif "person create" in command:
                values["person"] = str(json.loads(out)["id"])
            elif command.startswith("swaks"):
                assert "250 2.0.0 Message accepted" in out
        [thread] = json.loads(out)
        assert thread["subject"] == "Your renewal"
        assert {(link["kind"], link["how"]) for link in thread["links"]} == {
            ("person", "auto"), ("deal", "auto")}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
