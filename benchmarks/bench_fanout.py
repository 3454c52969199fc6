"""How large a mesh does `make bench-fanout` reach on this machine, and how long does it take?
(a benchmark, not a test; the goal is 500 Envoys within the machine's memory).

Summarises a finished fan-out sweep (the `fanout` scenario: 10 services x 1-50 pods) into
benchmarks/results/fanout.json: per size, application pods, sidecars, wall time, peak host
memory used, and the push figures of the sidecar mode (proxies updated, bytes, time to the
last ACK, with render / convert / delivery apart); sizes the sweep refused for memory, with
the estimate. Without a sweep directory it runs `meshbench sweep -s fanout` first.

    .venv/bin/python benchmarks/bench_fanout.py [results/<fanout sweep dir>]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.load import load_run  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "fanout.json"
PUSH = ("proxies_updated", "push_bytes_total", "convergence_max", "render_time", "convert_time",
        "send_to_last_ack", "kernel_sockets_written")


def sweep() -> Path:
    proc = subprocess.run([sys.executable, "-m", "bench", "sweep", "-s", "fanout"], cwd=REPO,
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode not in (0, 1):
        sys.exit(f"the sweep failed with exit {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def summarise(sweep_dir: Path) -> dict:
    record = json.loads((sweep_dir / "sweep.json").read_text())
    sizes = []
    for r in record["runs"]:
        run = load_run(sweep_dir / r["dir"])
        xds = run.without_failed(run.rows("xds"))
        xds = xds.assign(experiment=run.label("experiment").loc[xds.index])
        side = xds[(xds["mode"] == "sidecar") & (xds["entity"] == "mesh")]
        pushes = {}
        for exp, g in side.groupby("experiment"):
            pushes[str(exp)] = {m: float(g[g["metric"] == m]["value"].median())
                                for m in PUSH if (g["metric"] == m).any()}
        pods = r.get("services", 10) * r["pods_per_service"]
        sizes.append({"server_pods": pods, "sidecars": pods + 1, "wall_s": r.get("wall_s"),
                      "host_mem_used_peak_gib": r.get("host_mem_used_peak_gib"),
                      "exit": r["exit"], "sidecar_pushes": pushes})
    return {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version()},
            "sweep": sweep_dir.name, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()),
            "note": "local backend, one repetition per size, modes sidecar/ambient/waypoint "
                    "interleaved inside each size; memory is the host's MemAvailable drop",
            "sizes": sizes, "refused": record.get("skipped", []),
            "largest_sidecars": max((s["sidecars"] for s in sizes if s["exit"] in (0, 1)),
                                    default=0)}


def main() -> int:
    sweep_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else sweep()
    doc = summarise(sweep_dir)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    for s in doc["sizes"]:
        ns = s["sidecar_pushes"].get("new_service", {})
        print(f"{s['sidecars']:5d} sidecars: {s['wall_s']:7.1f} s, {s['host_mem_used_peak_gib']:5.2f} GiB, "
              f"new_service {ns.get('push_bytes_total', 0) / 1e6:6.2f} MB, "
              f"last ACK {ns.get('convergence_max', 0):7.0f} ms")
    for r in doc["refused"]:
        print(f"refused: {r['services']} x {r['pods_per_service']}: {r['reason']}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
