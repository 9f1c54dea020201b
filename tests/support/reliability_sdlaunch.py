"""Start a program the way systemd socket activation does (``sd_listen_fds(3)``).

``python -m tests.support.reliability_sdlaunch FD NAME [--wrong-pid] -- PROGRAM ARGS…``:
moves the inherited listening socket ``FD`` to fd 3, sets ``LISTEN_FDS=1``,
``LISTEN_FDNAMES=NAME`` and ``LISTEN_PID`` to its own PID (kept by ``exec``; with
``--wrong-pid`` another PID, which the program must ignore), then execs PROGRAM."""

from __future__ import annotations

import os
import sys


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    opts, command = args[:split], args[split + 1:]
    fd, name = int(opts[0]), opts[1]
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.set_inheritable(3, True)
    env = dict(os.environ)
    env["LISTEN_FDS"] = "1"
    env["LISTEN_FDNAMES"] = name
    env["LISTEN_PID"] = str(os.getpid() + (1 if "--wrong-pid" in opts else 0))
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
