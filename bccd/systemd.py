"""systemd socket activation (the ``sd_listen_fds`` protocol) without libsystemd.

``listen_sockets(environ=os.environ, pid=os.getpid())`` → ``{"smtp": sock, "http": sock}``
for the listening sockets systemd (or any launcher speaking the protocol) passed in:

* only when ``LISTEN_PID`` is this process and ``LISTEN_FDS`` = n ≥ 1; the sockets are
  fds 3 … 3+n-1 (``SD_LISTEN_FDS_START``);
* ``LISTEN_FDNAMES`` (colon-separated, ``FileDescriptorName=`` in the .socket unit) names
  them: ``smtp`` or ``lmtp`` → the SMTP listener, ``http`` → the HTTP listener; unnamed
  ones (``unknown`` or no names) are taken in order: SMTP first, then HTTP;
* each must be a listening stream socket, else ``ValueError`` with the fd and the reason;
* the variables are removed from ``environ`` (children must not inherit them) and the
  fds are made non-inheritable (close-on-exec), as ``sd_listen_fds(1)`` does.

A listener not passed in is bound by bccd itself from ``smtp.listen``/``http.listen``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3
_ROLES = {"smtp": "smtp", "lmtp": "smtp", "http": "http"}


def listen_sockets(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None
) -> dict[str, socket.socket]:
    env = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    listen_pid = env.get("LISTEN_PID", "")
    listen_fds = env.get("LISTEN_FDS", "")
    names_value = env.get("LISTEN_FDNAMES", "")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if not listen_pid.isdigit() or int(listen_pid) != pid or not listen_fds.isdigit():
        return {}
    count = int(listen_fds)
    names = names_value.split(":") if names_value else []
    found: dict[str, socket.socket] = {}
    unnamed = ["smtp", "http"]
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        name = names[i].lower() if i < len(names) else "unknown"
        role = _ROLES.get(name)
        if role is None:
            role = next((r for r in unnamed if r not in found), None)
            if role is None:
                raise ValueError(f"socket activation: fd {fd} ({name}) has no use in bccd")
        if role in found:
            raise ValueError(f"socket activation: a second {role} socket (fd {fd})")
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ValueError(f"socket activation: fd {fd}: {exc.strerror or exc}") from None
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"socket activation: fd {fd} is not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"socket activation: fd {fd} is not listening")
        sock.setblocking(False)
        found[role] = sock
    return found
