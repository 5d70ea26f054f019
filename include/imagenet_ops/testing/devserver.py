"""A small static HTTP server for demos and tests: Range requests, ETag, HEAD, and fault injection.

Binds to 127.0.0.1 only. Faults are queued per path and consumed one per request:
``"500"``/``"503"``/``"404"`` answer that status, ``"cut:N"`` sends the full headers but only N
bytes of the body before closing the connection (a download cut halfway).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    range: str | None
    if_range: str | None = None


class DevServer:
    """Serve ``root`` on ``http://127.0.0.1:<port>``; use as a context manager or call start/stop."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.requests: list[SeenRequest] = []
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    def fail(self, name: str, *actions: str) -> None:
        """Queue faults for the next requests of ``name`` (see the module docstring)."""
        with self._lock:
            self._faults["/" + name.lstrip("/")].extend(actions)

    def requests_for(self, name: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == "/" + name.lstrip("/")]

    def start(self) -> DevServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="devserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("devserver: " + fmt, *args)

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                server.requests.append(SeenRequest(self.command, path, self.headers.get("Range"), self.headers.get("If-Range")))
                fault = server._next_fault(path)
                if fault and fault.isdigit():
                    self._status_only(int(fault))
                    return
                target = (server.root / path.lstrip("/")).resolve()
                if server.root not in target.parents or not target.is_file():
                    self._status_only(404)
                    return
                data = target.read_bytes()
                start, status = 0, 200
                etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if if_range and if_range != etag:
                    rng = None  # RFC 9110: the file changed, send all of it
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                payload = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", formatdate(target.stat().st_mtime, usegmt=True))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if fault and fault.startswith("cut:"):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if body:
                        self.wfile.write(payload[: int(fault[4:])])
                        self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _status_only(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
