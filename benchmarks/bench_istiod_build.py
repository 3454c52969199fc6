"""What building the real istiod's binaries costs on this machine (a benchmark, not a test).

Builds every binary of bench/istiod/build.py into a fresh cache with a fresh Go build cache
(GOCACHE), so every package compiles from source: the cold build CI and a new machine pay
once. Module downloads are timed apart, into a fresh module cache (GOMODCACHE) when
--cold-modules is given (else the machine's, usually warm). Per binary: wall time and the
peak of the machine's used memory above the build's start (/proc/meminfo, every compiler
process counted).

    .venv/bin/python benchmarks/bench_istiod_build.py [--cold-modules] [--label TEXT]

Appends to benchmarks/results/istiod-build.json, each entry with the git commit it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "istiod-build.json"
sys.path.insert(0, str(ROOT))

from bench.istiod import build  # noqa: E402
from bench.meta import cpu_model, git_state  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold-modules", action="store_true",
                    help="download every module into a fresh module cache first (timed)")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mb-coldbuild-") as tmp:
        os.environ["MB_CACHE"] = str(Path(tmp) / "cache")
        os.environ["GOCACHE"] = str(Path(tmp) / "gocache")
        if args.cold_modules:
            os.environ["GOMODCACHE"] = str(Path(tmp) / "gomod")
        downloads: dict[str, float] = {}
        for mod in (f"istio.io/istio@{build.ISTIO_VERSION}",
                    f"k8s.io/kubernetes@{build.KUBERNETES_VERSION}",
                    f"github.com/k3s-io/kine@{build.KINE_VERSION}"):
            t0 = time.monotonic()
            subprocess.run(["go", "mod", "download", mod], check=True, capture_output=True,
                           env={**os.environ, "GOFLAGS": "-mod=mod"})
            downloads[mod] = round(time.monotonic() - t0, 1)
        records = [dataclasses.asdict(build.build(n)) for n in build.binaries()]
        modcache = os.environ.get("GOMODCACHE") or subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip()
        du = subprocess.run(["du", "-sm", modcache, os.environ["GOCACHE"]],
                            capture_output=True, text=True).stdout.split()
    entry = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "label": args.label,
             "git": git_state(), "cpu": cpu_model(), "nproc": os.cpu_count(),
             "go": subprocess.run(["go", "version"], capture_output=True,
                                  text=True).stdout.strip(),
             "modules_cold": args.cold_modules, "download_s": downloads,
             "builds": records, "total_build_s": round(sum(r["wall_s"] for r in records), 1),
             "module_cache_mib": int(du[0]) if du else None,
             "build_cache_mib": int(du[2]) if len(du) > 2 else None}
    history = json.loads(OUT.read_text()) if OUT.exists() else []
    history.append(entry)
    OUT.write_text(json.dumps(history, indent=1) + "\n")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
