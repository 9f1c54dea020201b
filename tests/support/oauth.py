"""A tiny OAuth 2.0 authorization server for tests, on 127.0.0.1 only.

- ``POST /token`` — ``grant_type=refresh_token`` with the client id/secret: issues a
  fresh random access token valid ``ttl`` seconds (``400 invalid_grant`` /
  ``401 invalid_client`` otherwise); counts refreshes in ``refreshes``.
- ``POST /introspect`` — RFC 7662, as Dovecot's ``oauth2`` passdb calls it
  (``introspection_mode = post``): ``{"active": true, "username": …}`` for a live token,
  ``{"active": false}`` otherwise.

``grant(user)`` returns a refresh token for that user (``rotate=True``: every refresh
issues a new refresh token and revokes the one used, as providers with refresh-token
rotation do); ``expire_all()`` makes every issued access token dead (as if it expired
early), ``revoke(refresh_token)`` kills a grant, ``hold(refresh_token)`` makes the next
refresh with it wait (returns ``(entered, gate)``: set when the request has arrived; set
it to let the answer go).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OAuthServer:
    def __init__(
        self,
        *,
        client_id: str = "bccd-test",
        client_secret: str = "client-s3cret",
        ttl: float = 3600.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.ttl = ttl
        self.grants: dict[str, str] = {}  # refresh token → user
        self.tokens: dict[str, tuple[str, float]] = {}  # access token → (user, expires_at)
        self.refreshes = 0
        self.rotating: set[str] = set()  # refresh tokens whose use rotates them
        self.held: dict[str, tuple[threading.Event, threading.Event]] = {}
        self.introspections = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> OAuthServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(n).decode()).items()}
                if self.path == "/token":
                    status, body = owner._token(form)
                elif self.path == "/introspect":
                    status, body = owner._introspect(form)
                else:
                    status, body = 404, {"error": "not_found"}
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    # ------------------------------------------------------------ grants

    def grant(self, user: str, *, rotate: bool = False) -> str:
        token = "rt-" + secrets.token_urlsafe(16)
        with self._lock:
            self.grants[token] = user
            if rotate:
                self.rotating.add(token)
        return token

    def hold(self, refresh_token: str) -> tuple[threading.Event, threading.Event]:
        entered, gate = threading.Event(), threading.Event()
        with self._lock:
            self.held[refresh_token] = (entered, gate)
        return entered, gate

    def revoke(self, refresh_token: str) -> None:
        with self._lock:
            self.grants.pop(refresh_token, None)

    def expire_all(self) -> None:
        with self._lock:
            self.tokens = {t: (u, 0.0) for t, (u, _e) in self.tokens.items()}

    # ------------------------------------------------------------ endpoints

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        used = form.get("refresh_token", "")
        with self._lock:
            held = self.held.pop(used, None)
        if held is not None:
            held[0].set()
            held[1].wait(30)
        with self._lock:
            user = self.grants.get(used)
            if user is None:
                return 400, {"error": "invalid_grant"}
            access = "at-" + secrets.token_urlsafe(16)
            self.tokens[access] = (user, time.time() + self.ttl)
            self.refreshes += 1
            body = {"access_token": access, "token_type": "Bearer", "expires_in": int(self.ttl)}
            if used in self.rotating:
                new = "rt-" + secrets.token_urlsafe(16)
                del self.grants[used]
                self.rotating.discard(used)
                self.grants[new] = user
                self.rotating.add(new)
                body["refresh_token"] = new
        return 200, body

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.introspections += 1
            found = self.tokens.get(form.get("token", ""))
        if found is None or found[1] <= time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": found[0], "exp": int(found[1])}
