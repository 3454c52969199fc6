"""How large a mesh does `make bench-fanout` reach on this machine, what does one config
change cost per role, and how long does it take? (a benchmark, not a test).

Summarises a finished fan-out sweep (the `fanout` scenario: 10 services x 1-50 pods) into
benchmarks/results/fanout.json: per size, wall time and peak host memory; per mode and
change, proxies updated, bytes (all proxies, and the largest per proxy of each role; the
ztunnel's WDS and its Envoy data path apart), time to the last ACK with the share that is
the harness's Python (render + convert) and the debounce; sizes the sweep refused. With
--before, the same for a sweep of an earlier commit, side by side. Without a sweep
directory it runs `meshbench sweep -s fanout` first.

    .venv/bin/python benchmarks/bench_fanout.py [results/<fanout sweep dir>] [--pods 50]
        [--before results/<sweep of the earlier commit>] [--note "reduced: sizes 1, 10"]

Each size also records where its wall time went (provision steps per mode, idle and load,
experiments, teardown), from the sweep's progress lines (<sweep>/progress.log).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.rundata import load_run  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "fanout.json"
PUSH = ("proxies_updated", "proxies_total", "proxies_pushed", "push_bytes_total",
        "convergence_p50", "convergence_max", "render_time", "convert_time",
        "send_to_last_ack", "debounce_time", "kernel_sockets_written", "unplanned_sends")


LOG = "progress.log"  # the sweep's progress lines, kept in its directory by sweep()


def sweep(pods: list[int] | None = None) -> Path:
    """Run the fanout sweep (only the sizes with `pods` pods per service, if given: the
    scenario is otherwise unchanged); its progress lines (stderr) are shown and kept as
    <sweep>/progress.log, which says where each size's time went (phases())."""
    import tempfile

    import yaml

    scenario = str(REPO / "workloads" / "scenarios" / "fanout.yaml")
    if pods:
        doc = yaml.safe_load(Path(scenario).read_text())
        doc["sweep"]["pods_per_service"] = pods
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="fanout-", delete=False)
        with tmp:
            yaml.safe_dump(doc, tmp)
        scenario = tmp.name
    proc = subprocess.Popen([sys.executable, "-m", "bench", "sweep", "-s", scenario], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        lines.append(line)
    out = proc.stdout.read().strip()
    if proc.wait() not in (0, 1) or not out:
        sys.exit(f"the sweep failed with exit {proc.returncode}")
    sweep_dir = Path(out.splitlines()[-1])
    (sweep_dir / LOG).write_text("".join(lines))
    return sweep_dir


_STAMP = re.compile(r"^\[(\d\d):(\d\d):(\d\d)\] (.*)$")
_STEP = re.compile(r"([a-z+ ]+) ([\d.]+) s")


def phases(log: str) -> dict[str, dict]:
    """Per size (run id, e.g. "05-s10-p50") and mode, where the wall time went, from the
    sweep's progress lines: provision (the backend's own steps, seconds each), idle and
    load (ready -> exposure), experiments (exposure -> teardown, pushes and both exposure
    reads), teardown (its steps). Timestamps have 1 s resolution."""
    out: dict[str, dict] = {}
    run = mode = ""
    day = 0
    last = -1
    marks: dict[str, float] = {}
    for raw in log.splitlines():
        m = _STAMP.match(raw.strip())
        if not m:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        if t < last:  # past midnight
            day += 86400
        last = t
        t += day
        msg = m[4]
        if msg.startswith("run "):
            run = msg.split()[1].rstrip(":")
        elif mode and msg.startswith(f"r1 {mode}: experiment exposure"):
            marks.setdefault("exposure", t)
        elif msg.startswith("local ") and " provision (" in msg:
            mode = msg.split()[1]
            steps = {k.strip(): float(v) for k, v in _STEP.findall(msg.split(": ", 1)[1])}
            rec = out.setdefault(run, {}).setdefault(mode, {})
            rec["provision_steps_s"] = steps
            rec["provision_s"] = round(sum(steps.values()), 1)
            marks = {"ready": t}
        elif msg.startswith("local teardown") and mode:
            steps = {k.strip(): float(v) for k, v in _STEP.findall(msg.split(": ", 1)[1])}
            rec = out.setdefault(run, {}).setdefault(mode, {})
            rec["teardown_steps_s"] = steps
            rec["teardown_s"] = round(sum(steps.values()), 1)
            start = t - rec["teardown_s"]
            if "exposure" in marks:
                rec["idle_and_load_s"] = marks["exposure"] - marks["ready"]
                rec["experiments_s"] = round(start - marks["exposure"], 1)
            mode = ""
    return out


def _pushes(run) -> dict:  # type: ignore[no-untyped-def]
    """mode -> change -> figures (medians over repetitions)."""
    xds = run.without_failed(run.rows("xds"))
    labels = run.labels.loc[xds.index]
    xds = xds.assign(experiment=[lab.get("experiment") for lab in labels],
                     config=[lab.get("config", "") for lab in labels])
    out: dict = {}
    for (mode, exp), g in xds.groupby(["mode", "experiment"]):
        mesh = g[g["entity"] == "mesh"]
        figs = {m: float(mesh[mesh["metric"] == m]["value"].median())
                for m in PUSH if (mesh["metric"] == m).any()}
        conv, render = figs.get("convergence_max"), figs.get("render_time", 0.0)
        if conv:
            figs["python_share_of_convergence"] = round(
                (render + figs.get("convert_time", 0.0)) / conv, 3)
        per = g[g["metric"] == "push_bytes_per_proxy_max"]
        for (role, cfg), h in per.groupby(["entity", "config"]):
            key = f"{role}_bytes_per_proxy_max" + ("_envoy_datapath" if cfg else "")
            figs[key] = float(h["value"].median())
        if per.empty:  # an older run: the largest push per proxy, by role from the name
            one = g[g["metric"] == "push_bytes"]
            for role in ("sidecar", "ztunnel", "waypoint"):
                v = one[one["entity"].str.startswith(role)]["value"]
                if not v.empty:
                    figs[f"{role}_bytes_per_proxy_max"] = float(v.max())
        out.setdefault(str(mode), {})[str(exp)] = figs
    return out


def cpu_seconds(run_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """mode -> role -> {"processes", "cpu_s"}: CPU time of every process the resource
    sampler watched (its last cumulative reading, so an Envoy's start-up counts), from
    resources.jsonl: the kernel's account of where the machine's cores went, independent
    of the progress lines' timestamps. The sampler's own row has no mode ("harness")."""
    last: dict[tuple[int, str, str], int] = {}
    path = run_dir / "resources.jsonl"
    if not path.exists():
        return {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if "cpu_ns" in d and "pid" in d:
                last[(d["pid"], d.get("mode") or "harness", d["role"])] = d["cpu_ns"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (_, mode, role), ns in last.items():
        r = out.setdefault(mode, {}).setdefault(role, {"processes": 0, "cpu_s": 0.0})
        r["processes"] += 1
        r["cpu_s"] = round(r["cpu_s"] + ns / 1e9, 1)
    return out


def summarise(sweep_dir: Path) -> dict:
    record = json.loads((sweep_dir / "sweep.json").read_text())
    log = sweep_dir / LOG
    where = phases(log.read_text()) if log.exists() else {}
    sizes = []
    for r in record["runs"]:
        run = load_run(sweep_dir / r["dir"])
        pods = r.get("services", 10) * r["pods_per_service"]
        sizes.append({"server_pods": pods, "sidecars": pods + 1, "wall_s": r.get("wall_s"),
                      "host_mem_used_peak_gib": r.get("host_mem_used_peak_gib"),
                      "exit": r["exit"], "git": run.manifest.get("git", {}),
                      **({"where_the_time_went_s": where[r["dir"]]} if r["dir"] in where
                         else {}),
                      "cpu_s_by_mode_and_role": cpu_seconds(sweep_dir / r["dir"]),
                      "pushes": _pushes(run)})
    return {"sweep": sweep_dir.name, "sizes": sizes, "refused": record.get("skipped", []),
            "largest_sidecars": max((s["sidecars"] for s in sizes if s["exit"] in (0, 1)),
                                    default=0)}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", nargs="?", type=Path)
    ap.add_argument("--before", type=Path, help="a sweep of the earlier commit")
    ap.add_argument("--note", default="", help="e.g. which sizes a reduced sweep ran")
    ap.add_argument("--pods", type=lambda v: [int(x) for x in v.split(",")],
                    help="without a sweep directory: run only these pods-per-service sizes "
                         "of the fanout sweep, e.g. 50 (10 x 50 = 501 sidecars)")
    args = ap.parse_args()
    sweep_dir = args.sweep_dir or sweep(args.pods)
    doc = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version()},
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "note": ("local backend, one repetition per size, modes sidecar/ambient/waypoint "
                    "interleaved inside each size; memory is the host's MemAvailable drop; "
                    "python_share_of_convergence = (render + convert) / last ACK. "
                    + args.note).strip(),
           "after": summarise(sweep_dir)}
    if args.before:
        doc["before"] = summarise(args.before)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    for label in ("before", "after"):
        if label not in doc:
            continue
        for s in doc[label]["sizes"]:
            for mode, changes in s["pushes"].items():
                for exp, f in changes.items():
                    print(f"{label:6s} {s['server_pods']:4d} pods {mode:8s} {exp:11s} "
                          f"{f.get('proxies_updated', 0):4.0f} proxies "
                          f"{f.get('push_bytes_total', 0):9.0f} B, last ACK "
                          f"{f.get('convergence_max', 0):7.1f} ms "
                          f"(python {f.get('python_share_of_convergence', 0):.0%})")
            where = s.get("where_the_time_went_s", {})
            if where:
                print(f"{label:6s} {s['server_pods']:4d} pods wall {s['wall_s']} s: " + "; ".join(
                    f"{m} provision {w.get('provision_s')} s, idle+load "
                    f"{w.get('idle_and_load_s')} s, experiments {w.get('experiments_s')} s, "
                    f"teardown {w.get('teardown_s')} s" for m, w in where.items()))
        for r in doc[label]["refused"]:
            print(f"refused: {r['services']} x {r['pods_per_service']}: {r['reason']}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
