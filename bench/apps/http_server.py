"""The test application: a tiny keep-alive HTTP/1.1 server with a fixed payload.

    python -m bench.apps.http_server --port 8080 --payload-bytes 1024 --delay-ms 0 [--bind 0.0.0.0]
                                     [--stall-ms 300 --stall-period-s 1]

GET on any path answers 200 with exactly --payload-bytes bytes (after --delay-ms, if > 0);
GET /healthz answers 200 "ok" without delay. Nothing is logged per request. SIGTERM exits 0.
With --stall-ms, the first request after every --stall-period-s waits that long (a server
stall, for testing that latency from intended send times accounts for it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PayloadHandler(BaseHTTPRequestHandler):
    """Answers every GET with the class-level `payload`; configured once by `serve`."""

    protocol_version = "HTTP/1.1"  # keep-alive: one connection per load-generator user
    # Without this every response waits ~40 ms for the client's delayed ACK (Nagle).
    disable_nagle_algorithm = True
    # Buffer the response so headers and body leave in one write (one segment for small
    # payloads); the base class flushes wfile after each request.
    wbufsize = -1
    payload: bytes = b""
    delay_s: float = 0.0
    stall_s: float = 0.0
    stall_period_s: float = 1.0
    _stall_lock = threading.Lock()
    _next_stall = 0.0

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok"
        else:
            if self.delay_s > 0:
                time.sleep(self.delay_s)
            if self.stall_s > 0 and self._stall_due():
                time.sleep(self.stall_s)
            body = self.payload
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    @classmethod
    def _stall_due(cls) -> bool:
        now = time.monotonic()
        with cls._stall_lock:
            if now < cls._next_stall:
                return False
            cls._next_stall = now + cls.stall_period_s
            return True

    def log_message(self, format: str, *args: object) -> None:
        pass  # a log line per request would cost more than the request


class PayloadServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops SYNs when many users connect


def serve(bind: str, port: int, payload_bytes: int, delay_ms: float, stall_ms: float = 0.0,
          stall_period_s: float = 1.0) -> None:
    """Serve until SIGTERM or SIGINT."""
    handler = type("Handler", (PayloadHandler,), {
        "payload": b"x" * payload_bytes, "delay_s": delay_ms / 1000.0,
        "stall_s": stall_ms / 1000.0, "stall_period_s": stall_period_s,
        "_next_stall": time.monotonic() + stall_period_s,
    })
    server = PayloadServer((bind, port), handler)
    # serve_forever runs in this thread, so shutdown() here would deadlock: leave by exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--stall-ms", type=float, default=0.0)
    p.add_argument("--stall-period-s", type=float, default=1.0)
    a = p.parse_args(argv)
    if a.payload_bytes < 0 or a.delay_ms < 0 or a.stall_ms < 0 or a.stall_period_s <= 0:
        p.error("--payload-bytes, --delay-ms and --stall-ms must be >= 0, "
                "--stall-period-s > 0")
    serve(a.bind, a.port, a.payload_bytes, a.delay_ms, a.stall_ms, a.stall_period_s)


if __name__ == "__main__":
    main()
