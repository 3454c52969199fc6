"""`meshbench calibrate`: the harness's latency overheads held against the independent
reference client's (bench/load/refclient.c), one run per connection count."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.load.reference import refclient_path
from bench.run.context import log
from bench.run.execute import EXIT_INTERRUPTED, execute
from bench.scenario import Scenario
from bench.store import new_run_id


def calibrate(s: Scenario, results: Path, connections: str | None) -> tuple[Path, int]:
    """The harness's latency overheads beside the independent reference client's; the
    calibration's directory and the worst exit code of its runs.

    One run per connection count (results/<id>-calibrate/c<N>/), the scenario's modes and
    levels, the reference client right after each cell, no config-push experiments; then a
    table per connection count: p50 overhead over baseline from the harness's headline
    timing, from Locust's own timing and from the reference, with ratios, flagging any mode
    outside 15 % and any level where the order of modes differs. calibrate.json keeps it."""
    from analysis.latency import AGREEMENT_TOLERANCE, agreement, same_order
    from analysis.rundata import load_run

    refclient_path()  # one clear line now rather than a failure in every cell
    try:
        conns = [int(x) for x in (connections or str(s.load.connections)).split(",") if x]
    except ValueError:
        raise UserError(f"--connections {connections!r}: give whole numbers, e.g. 1,4",
                        hint="meshbench calibrate -s quick --connections 1,4") from None
    if not conns or min(conns) < 1:
        raise UserError("--connections: at least one positive count", hint="e.g. 1,4")
    out_dir = results / new_run_id(s.name + "-calibrate")
    out_dir.mkdir(parents=True)
    record: dict[str, Any] = {"scenario": s.name, "scenario_hash": s.hash,
                              "tolerance": AGREEMENT_TOLERANCE, "runs": []}
    code = 0
    for c in conns:
        sub = dataclasses.replace(
            s, name=f"{s.name}-calibrate", experiments=(),
            load=dataclasses.replace(s.load, connections=c, reference=True,
                                     processes=s.load.processes if c % s.load.processes == 0
                                     else 1),
            probes=dataclasses.replace(s.probes, hops=dataclasses.replace(
                s.probes.hops, overhead_check=False)))
        log(f"calibrate: {c} connection(s)")
        run_dir, rc = execute(sub, out_dir, run_id=f"c{c}",
                              extra={"calibrate": {"id": out_dir.name, "connections": c}})
        if rc == EXIT_INTERRUPTED:
            return out_dir, rc
        code = max(code, rc)
        run = load_run(run_dir)  # a contaminated cell (its window or its reference's) is
        rows = agreement(run)    # set aside: no agreement across a stolen window
        order = same_order(rows, "harness_us")
        aside = {f"r{r}-{m}-{lv}rps": why for (m, lv, r), why in run.set_aside.items()}
        if aside:
            log(f"calibrate: {len(aside)} cells set aside as contaminated by the machine's "
                "noise (see the run's report)")
        record["runs"].append({"connections": c, "dir": run_dir.name, "exit": rc,
                               "rows": rows, "same_order": {str(k): v for k, v in order.items()},
                               "set_aside": aside})
        (out_dir / "calibrate.json").write_text(json.dumps(record, indent=2))
        print(agreement_text(c, rows, order))
    return out_dir, code


def agreement_text(connections: int, rows: list[dict[str, Any]],
                    order: dict[int, bool]) -> str:
    from analysis.latency import AGREEMENT_TOLERANCE

    def us(v: float | None) -> str:
        return f"{v:8.0f}" if v is not None else "       —"

    lines = [f"\n{connections} connection(s): p50 overhead over baseline (µs)",
             f"{'mode':9} {'rps':>5} {'reference':>9} {'harness':>8} {'ratio':>6} "
             f"{'Locust':>8} {'ratio':>6} {'ref,kernel':>10}"]
    for r in rows:
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] is not None else "     —"
        lratio = f"{r['locust_ratio']:6.2f}" if r["locust_ratio"] is not None else "     —"
        flag = ("  (saturated: not compared)" if r["within"] is None else
                "" if r["within"] else f"  <- outside {AGREEMENT_TOLERANCE:.0%}")
        lines.append(f"{r['mode']:9} {r['level']:5d} {us(r['reference_us']):>9} "
                     f"{us(r['harness_us'])} {ratio} {us(r['locust_us'])} {lratio} "
                     f"{us(r.get('reference_kernel_us')):>10}{flag}")
    lines += [f"order of modes at {lv} rps: {'same as the reference' if ok else 'DIFFERENT'}"
              for lv, ok in order.items()]
    return "\n".join(lines)
