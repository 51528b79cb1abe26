"""A seeded fault-injecting HTTP proxy on loopback, in front of the moto S3 server.

For a chosen share of requests it answers 500 or 503, resets the connection, sends a truncated
body, stalls past the client's read timeout, or delays; everything else is forwarded untouched.
It binds 127.0.0.1 only and forwards only to the upstream given (also on loopback).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("500", "503", "reset", "truncate", "stall", "delay")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class FaultProxy:
    """Forward HTTP to ``upstream`` with seeded faults.

    Args:
        upstream: ``(host, port)`` of the real server (loopback).
        rate: share of requests that get a fault.
        seed: seed of the fault draws.
        faults: the fault kinds to draw from.
        stall_s: how long a ``stall`` waits before answering (set above the client's timeout).
        delay_s: ``(min, max)`` seconds of a ``delay``.
        latency_s: extra seconds added to every response (to slow downloads down on purpose).
        path_filter: only requests whose path contains this get faults (None: all).
    """

    def __init__(self, upstream: tuple[str, int], *, rate: float = 0.2, seed: int = 0,
                 faults: tuple[str, ...] = FAULTS, stall_s: float = 2.0, delay_s: tuple[float, float] = (0.01, 0.15),
                 latency_s: float = 0.0, path_filter: str | None = None) -> None:
        if not upstream[0].startswith("127."):
            raise ValueError("the fault proxy forwards to loopback only")
        self.upstream, self.rate, self.faults = upstream, rate, faults
        self.stall_s, self.delay_s, self.latency_s, self.path_filter = stall_s, delay_s, latency_s, path_filter
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.counts = {f: 0 for f in FAULTS}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def faulted(self) -> int:
        return sum(self.counts.values())

    def _draw(self, path: str) -> str | None:
        with self._lock:
            self.requests += 1
            if self.path_filter is not None and self.path_filter not in path:
                return None
            if self._rng.random() >= self.rate:
                return None
            f = self._rng.choice(self.faults)
            self.counts[f] += 1
            return f

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                fault = proxy._draw(self.path)
                if fault in ("500", "503"):
                    msg = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                           f"{'InternalError' if fault == '500' else 'SlowDown'}</Code>"
                           f"<Message>injected</Message></Error>").encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                    self.close_connection = True
                    return
                if fault == "delay":
                    time.sleep(random.uniform(*proxy.delay_s))
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "truncate" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
