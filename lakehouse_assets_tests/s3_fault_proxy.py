"""A fault-injecting HTTP proxy in front of the moto S3 server, on 127.0.0.1.

Why: retries and atomicity only mean something over a real socket with a real S3 protocol server
behind it. boto3, Polars (object_store) and pyarrow all talk to this proxy as their S3 endpoint; it
forwards every request to moto unchanged (Host header included, so signatures stay valid) unless a
fault matches: an S3-style 5xx/403 error reply, a delay (the client times out), a TCP reset, or a
stall half-way through receiving the request body (a writer frozen mid-upload, to be killed -9).
Every request is logged as (method, path) so tests can count attempts.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_S3_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied", 502: "BadGateway", 504: "GatewayTimeout"}


@dataclass
class S3Fault:
    method: str
    path_substring: str
    remaining: int
    status: int | None = None
    delay: float = 0.0
    reset: bool = False
    stall: bool = False


class S3FaultProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.requests: list[tuple[str, str]] = []
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._faults: list[S3Fault] = []
        self._httpd: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> S3FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients hanging up on purpose (timeouts, kills) are expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ------------------------------------------------------------------ faults and log
    def inject(self, method: str, path_substring: str, *, times: int = 1, status: int | None = None,
               delay: float = 0.0, reset: bool = False, stall: bool = False) -> None:
        with self._lock:
            self._faults.append(S3Fault(method.upper(), path_substring, times, status, delay, reset, stall))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self._release.set()

    def count(self, method: str, path_substring: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and path_substring in p)

    def _take(self, method: str, path: str) -> S3Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self._faults:
                if fault.remaining > 0 and fault.method == method and fault.path_substring in path:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ forwarding
    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        path = urllib.parse.unquote(handler.path)
        fault = self._take(method, path)
        if fault is not None and fault.stall:
            length = int(handler.headers.get("Content-Length") or 0)
            handler.rfile.read(length // 2)  # half the upload arrives, then the writer freezes
            self.stalled.set()
            self._release.wait(120)
            handler.close_connection = True
            return
        body = self._read_body(handler)
        if fault is not None and fault.delay:
            self._release.wait(fault.delay)
        if fault is not None and fault.reset:
            handler.close_connection = True
            try:
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.connection.close()
            except OSError:
                pass
            return
        if fault is not None and fault.status is not None:
            code = _S3_CODES.get(fault.status, "InternalError")
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>injected by S3FaultProxy</Message><Resource>{path}</Resource></Error>"
            ).encode()
            handler.send_response(fault.status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(payload)
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            handler.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and (key.lower() != "content-length" or method == "HEAD"):
                    handler.send_header(key, value)
            if method != "HEAD":
                handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(data)
        finally:
            conn.close()
