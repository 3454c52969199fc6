"""`meshbench sweep`: one run per pod count of a scenario's sweep, smallest first, with a
guard on the host's memory, then the fit of cost over pods (analysis.scaling)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.run.context import log
from bench.run.execute import EXIT_INTERRUPTED, execute
from bench.scenario import Scenario, Sweep
from bench.store import new_run_id


def run_sweep(s: Scenario, results: Path) -> tuple[Path, int]:
    """One run per size of the scenario's sweep, into results/<sweep id>/, then the fit;
    the sweep's directory and the worst exit code of its runs.

    Sizes run smallest first. Host memory is watched during each run; a size whose memory,
    extrapolated per pod from the largest size done, would not fit in 85 % of what is
    available is not started: it and every larger size are recorded as skipped, with the
    estimate, so the sweep says where this machine's limit is."""
    from analysis.scaling import write_scaling

    sw = s.sweep
    if not sw.pods_per_service and not sw.services:
        raise UserError(f"scenario {s.name} has no sweep.pods_per_service or sweep.services",
                        hint="use -s scaling, or add sweep: {pods_per_service: [1, 4, 8]}")
    sizes = sorted(((svc, pps) for svc in sw.services or (s.topology.services,)
                    for pps in sw.pods_per_service or (s.topology.pods_per_service,)),
                   key=lambda p: (p[0] * p[1], p))
    sweep_dir = results / new_run_id(s.name + "-sweep")
    sweep_dir.mkdir(parents=True)
    record: dict[str, Any] = {"scenario": s.name, "scenario_hash": s.hash,
                              "sizes": [pps for _, pps in sizes],
                              "points": [{"services": a, "pods_per_service": b} for a, b in sizes],
                              "runs": [], "skipped": []}
    code = 0
    per_pod_gib = 0.0  # host memory per application pod, from the latest (largest) size done
    for i, (svc, pps) in enumerate(sizes, start=1):
        pods = svc * pps
        avail = mem_available_gib()
        need = per_pod_gib * pods
        if need > 0.85 * avail:
            for svc2, pps2 in sizes[i - 1:]:
                record["skipped"].append({
                    "services": svc2, "pods_per_service": pps2,
                    "reason": f"needs ~{per_pod_gib * svc2 * pps2:.1f} GiB (measured "
                              f"{per_pod_gib * 1024:.0f} MiB per pod), {avail:.1f} GiB "
                              "available"})
            log(f"sweep: stopping before {pods} pods: needs ~{need:.1f} GiB, "
                f"{avail:.1f} GiB available")
            (sweep_dir / "sweep.json").write_text(json.dumps(record, indent=2))
            break
        sub = dataclasses.replace(
            s, name=f"{s.name}-s{svc}-p{pps}", sweep=Sweep(),
            topology=dataclasses.replace(s.topology, services=svc, pods_per_service=pps))
        log(f"sweep {i}/{len(sizes)}: {svc} services x {pps} pods ({pods} server pods)")
        t0 = time.monotonic()
        with MemWatch() as watch:
            run_dir, rc = execute(sub, sweep_dir, run_id=f"{i:02d}-s{svc}-p{pps}", report=False,
                                  extra={"sweep": {"id": sweep_dir.name, "services": svc,
                                                   "pods_per_service": pps}})
        used = watch.start_gib - watch.min_gib
        # from the largest size done: its fixed part (control plane, ztunnels, sampler) is
        # spread over the most pods, so the estimate is the closest to the next size's
        per_pod_gib = used / max(pods, 1)
        record["runs"].append({"services": svc, "pods_per_service": pps, "dir": run_dir.name,
                               "exit": rc, "wall_s": round(time.monotonic() - t0, 1),
                               "host_mem_used_peak_gib": round(used, 2),
                               "host_mem_available_gib": round(watch.start_gib, 2)})
        (sweep_dir / "sweep.json").write_text(json.dumps(record, indent=2))
        code = max(code, rc)
        if rc == EXIT_INTERRUPTED:
            return sweep_dir, rc
    for p in write_scaling(sweep_dir):
        log(f"wrote {p}")
    return sweep_dir, code


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


class MemWatch:
    """The lowest MemAvailable seen while the block runs (polled every 0.5 s)."""

    def __enter__(self) -> MemWatch:
        self.start_gib = self.min_gib = mem_available_gib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="memwatch", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            self.min_gib = min(self.min_gib, mem_available_gib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
