"""The push report's new parts: bytes by role and xDS type, the push decision table from
the manifest, and claim (c)'s policies row in the seed's words (the least exposed sidecar)."""

from __future__ import annotations

import json
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py

from analysis import claims as cl
from analysis.push import bytes_by_type_section, decision_section
from analysis.rundata import load_run
from bench.backends.local.backend import istio_fidelity
from bench.store import Cell, RunStore, Sample


def _run(tmp_path: Path) -> Path:
    run_dir = fx.make_run(tmp_path, finalize=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    store = RunStore(run_dir, manifest)
    store.update(istio_fidelity=istio_fidelity())
    samples = []
    for rep in (0, 1, 2):
        for mode, role, policies, bytes_ in (("sidecar", "sidecar", (0, 1), (900, 1000)),
                                            ("ambient", "ztunnel", (1, 1), (700, 700))):
            cell = Cell(rep, mode, 0)
            for i, (pol, b) in enumerate(zip(policies, bytes_, strict=True)):
                labels = {"view": "exposure", "role": role, "state": "after_changes"}
                for m, v in (("policies_known", pol), ("policies_total", 1),
                             ("config_bytes", b)):
                    samples.append(Sample.for_cell(cell, source="xds", metric=m, unit="count",
                                                   value=float(v), entity=f"{role}-{i}",
                                                   labels=labels))
            samples.append(Sample.for_cell(cell, source="xds", metric="push_bytes_by_type",
                                           unit="bytes", value=300.0, entity=role,
                                           labels={"experiment": "l4_authz",
                                                   "xds_type": "lds" if role == "sidecar"
                                                   else "wds_authorization"}))
    store.append(samples)
    return run_dir


def test_sections_and_exposure_claim(tmp_path: Path) -> None:
    run = load_run(_run(tmp_path))
    text = "\n".join(bytes_by_type_section(run))
    assert "wds_authorization 300" in text and "lds 300" in text
    decision = "\n".join(decision_section(run))
    assert "pilot/pkg/xds/cds.go" in decision and "VirtualService" in decision
    rows = cl.claim_rows(run)
    [pol] = [r for r in rows if r.claim == cl.C_EXPOSURE and r.tested == cl.POLICY_CLAIM]
    # the seed's sentence on the least exposed sidecar: one sidecar holds none of the one
    # policy (Istio scopes policies to the workloads they select)
    assert pol.verdict == "not supported"
    assert pol.result.reason == "the least exposed sidecar held 0 of 1 policies"
    assert pol.measured == "sidecar sidecars 0–1 of 1; ambient ztunnels 1 of 1 policies"
