"""A reply whose body crawls: the fault that per-read timeouts never catch, shared by both stand-ins."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler


def trickle(handler: BaseHTTPRequestHandler, body: bytes, bytes_per_second: float, stopping: threading.Event) -> None:
    """Send ``body`` (headers already sent) one byte at a time: each read succeeds, the transfer never ends.

    ``stopping`` is the server's shutdown event, so a stopping server does not wait for the crawl to finish.
    """
    handler.close_connection = True
    try:
        for i in range(len(body)):
            handler.wfile.write(body[i : i + 1])
            handler.wfile.flush()
            if stopping.wait(1.0 / bytes_per_second):
                return
    except OSError:  # the client gave up (its deadline), as it should
        return
