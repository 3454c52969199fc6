"""Claims a run cannot test read "not testable here" (analysis.preconditions): the verdict
is never decided by the topology or by the backend's stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py

from analysis import claims as cl
from analysis import preconditions as pre
from analysis.rundata import load_run
from bench import scenario as scen
from bench.backends.local.backend import SIMPLIFICATIONS


def _with_scenario(tmp_path: Path, raw: dict, simplifications: list[str]) -> Path:
    run_dir = fx.make_run(tmp_path)
    m = json.loads((run_dir / "manifest.json").read_text())
    m.update(scenario=raw, simplifications=simplifications)
    (run_dir / "manifest.json").write_text(json.dumps(m))
    return run_dir


def test_the_default_topology_and_the_local_stand_in_make_claims_untestable(
        tmp_path: Path) -> None:
    raw = scen.read("quick").to_dict()
    setup = pre.setup_of(load_run(_with_scenario(tmp_path, raw, list(SIMPLIFICATIONS))))
    assert setup is not None
    assert (setup.sidecars, setup.ztunnels, setup.policies, setup.policy_workloads) == (
        2, 2, 1, 1)
    assert not setup.real_ztunnel and not setup.pods_exceed_nodes
    assert "ztunnel role is an Envoy" in pre.memory(setup)
    assert "make bench-scaling" in pre.memory(setup)
    assert "2 sidecars against 2 ztunnels" in pre.fanout(setup, "waypoint", "l4_authz")
    assert "holds no L7 route" in pre.fanout(setup, "ambient", "l7_route")
    assert "2 sidecars against 2 ztunnels" in pre.exposure(setup)
    assert "1 policy selecting 1 workload" in pre.policies(setup)
    rows = cl.claim_rows(load_run(tmp_path / fx.RUN_ID))
    memory = [r for r in rows if "memory" in r.tested and r.level is not None]
    assert memory and all(r.verdict == cl.NOT_TESTABLE for r in memory)
    cpu = [r for r in rows if "data-plane CPU" in r.tested]
    assert cpu and all(r.verdict != cl.NOT_TESTABLE for r in cpu)  # per-request cost: testable
    # memory is descriptive: in the detail table, not on the first screen
    assert all(not r.primary for r in memory)
    answers = "\n".join(cl.answers(rows))
    assert "memory" not in answers and "ztunnel role is an Envoy" not in answers
    assert "cost per pod" in answers.splitlines()[0]


def test_a_topology_with_more_pods_than_nodes_and_a_real_ztunnel_is_testable(
        tmp_path: Path) -> None:
    raw = scen.read("quick").to_dict()
    raw["topology"].update(services=3, pods_per_service=4)
    raw["experiments"] = ["new_service", "l4_authz"]
    setup = pre.setup_of(load_run(_with_scenario(tmp_path, raw, [])))
    assert setup is not None and setup.real_ztunnel and setup.pods_exceed_nodes
    assert setup.sidecars == 13 and setup.services == 4
    assert pre.memory(setup) == pre.fanout(setup, "waypoint", "l4_authz") == ""
    assert pre.exposure(setup) == ""
    # the local changes add one policy: still untestable (the real istiod sweep adds them
    # per workload)
    assert "1 policy selecting 1 workload" in pre.policies(setup)
    assert "make bench-fanout-istiod" in pre.policies(setup)


def test_a_fabricated_run_without_a_whole_scenario_is_judged_on_its_data(
        tmp_path: Path) -> None:
    assert pre.setup_of(load_run(fx.make_run(tmp_path))) is None
