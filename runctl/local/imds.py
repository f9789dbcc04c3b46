"""A small IMDSv2 endpoint for one local instance (token required, as with IMDSv2 enforced)."""

from __future__ import annotations

import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name, not a secret
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105


class _ImdsServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An agent that went away mid-request (its local instance was terminated) is normal
        here: no traceback on the user's terminal. Anything else is reported as usual."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LocalImds:
    """Serves /latest/meta-data for one instance; notices can be set to inject interruptions."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.metadata = dict(metadata)
        self.notices: dict[str, dict[str, Any]] = {}
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server = _ImdsServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/"

    def start(self) -> LocalImds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_notice(self, path: str, body: dict[str, Any]) -> None:
        """Make `path` (e.g. 'spot/instance-action') answer with body instead of 404."""
        with self._lock:
            self.notices[path] = body

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
        return token

    def _valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._tokens

    def _lookup(self, path: str) -> str | None:
        with self._lock:
            if path in self.notices:
                return json.dumps(self.notices[path])
        return self.metadata.get(path)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: this is an emulator

            def _reply(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path != "/latest/api/token" or not self.headers.get(TOKEN_TTL_HEADER):
                    self._reply(400)
                    return
                self._reply(200, imds._issue_token())

            def do_GET(self) -> None:
                if not imds._valid(self.headers.get(TOKEN_HEADER)):
                    self._reply(401)
                    return
                prefix = "/latest/meta-data/"
                if not self.path.startswith(prefix):
                    self._reply(404)
                    return
                value = imds._lookup(self.path[len(prefix) :].rstrip("/"))
                self._reply(200, value) if value is not None else self._reply(404)

        return Handler
