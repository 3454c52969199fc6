"""The control-plane process: python -m bench.controlplane --xds-socket X --control-socket C
--events E.jsonl

Serves ADS on X (mode 0666: the proxies run as uid 1337) and the control API (see api.py) on
C (mode 0600), appends accounting events to E, logs to stderr. SIGTERM or SIGINT stops it
and removes both sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import stat
import sys
from pathlib import Path

import grpc

from bench.controlplane.accounting import Ledger
from bench.controlplane.api import LINE_LIMIT, ControlApi
from bench.controlplane.server import XdsServer

log = logging.getLogger("bench.controlplane")
GRPC_OPTIONS = [
    # a NACK carries Envoy's error text, which can be long for a large config
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
]


def _clear(path: Path) -> None:
    """Remove a socket left by an earlier run; refuse to remove anything else."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SystemExit(f"{path} exists and is not a socket")
        path.unlink()


async def serve(xds_socket: Path, control_socket: Path, events: Path,
                debounce_ms: float = 0.0, debounce_max_ms: float = 10_000.0,
                throttle: int = 0) -> None:
    for p in (xds_socket, control_socket):
        _clear(p)
    ledger = Ledger(events)
    xds = XdsServer(ledger, debounce_ms=debounce_ms, debounce_max_ms=debounce_max_ms,
                    throttle=throttle)
    grpc_server = grpc.aio.server(options=GRPC_OPTIONS)
    grpc_server.add_generic_rpc_handlers((xds.handler(),))
    grpc_server.add_insecure_port(f"unix:{xds_socket}")
    await grpc_server.start()
    xds_socket.chmod(0o666)
    api = ControlApi(xds)
    control = await asyncio.start_unix_server(api.serve_connection, path=str(control_socket),
                                              limit=LINE_LIMIT)
    control_socket.chmod(0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("control plane pid %d: xds %s, control %s, events %s", os.getpid(), xds_socket,
             control_socket, events)
    try:
        await stop.wait()
    finally:
        control.close()
        await grpc_server.stop(grace=0.5)
        ledger.close()
        for p in (xds_socket, control_socket):
            p.unlink(missing_ok=True)
        log.info("control plane stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.controlplane", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xds-socket", type=Path, required=True)
    ap.add_argument("--control-socket", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True, help="JSON-lines accounting file")
    ap.add_argument("--debounce-ms", type=float, default=0.0,
                    help="istiod's PILOT_DEBOUNCE_AFTER (100 ms there); 0: push at once")
    ap.add_argument("--debounce-max-ms", type=float, default=10_000.0,
                    help="istiod's PILOT_DEBOUNCE_MAX (10 s)")
    ap.add_argument("--push-throttle", type=int, default=0,
                    help="istiod's PILOT_PUSH_THROTTLE: sends in flight at once (0: no limit)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.xds_socket, args.control_socket, args.events, args.debounce_ms,
                      args.debounce_max_ms, args.push_throttle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
