"""The nightly workflow's structure (it cannot run here): schedule, jobs, make targets and
variables that the Makefile has, pins equal to the kind backend's, artifacts handed on."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.backends.kube import versions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
MAKEFILE = ROOT / "Makefile"

# Targets or variables the workflow may use before the Makefile has them (none now).
PENDING_TARGETS: set[str] = set()
PENDING_VARIABLES: set[str] = set()


def makefile_targets(text: str) -> set[str]:
    """Explicit rule targets (not special targets like .PHONY, nor $(VAR) targets)."""
    out: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\- ]+?)\s*:(?![=:])", line)
        if m and not line.startswith("\t"):
            out |= {t for t in m.group(1).split() if not t.startswith(".")}
    return out


def makefile_variables(text: str) -> set[str]:
    """Variables the Makefile assigns or reads."""
    assigned = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?|:|\+)?=", text, re.MULTILINE))
    return assigned | set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))


MAKE_OPTIONS_WITH_ARGUMENT = {"-C", "-f", "-o", "-W", "-I", "-j", "-l"}


def make_calls(script: str) -> list[tuple[list[str], list[str]]]:
    """(targets, VAR names) of each `make` command in a shell script."""
    calls = []
    # a GitHub expression is one word to the shell once Actions has substituted it
    joined = re.sub(r"\$\{\{[^}]*\}\}", "GH_EXPRESSION", script.replace("\\\n", " "))
    for line in joined.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            while words and words[0] in ("sudo", "env", "-E", "time"):
                words = words[1:]
            if not words or words[0] != "make":
                continue
            targets, variables = [], []
            rest = iter(words[1:])
            for w in rest:
                if w.startswith((">", "2>")):
                    break
                if w in MAKE_OPTIONS_WITH_ARGUMENT:
                    next(rest, None)
                elif "=" in w and not w.startswith("-"):
                    variables.append(w.split("=", 1)[0])
                elif not w.startswith("-"):
                    targets.append(w)
            calls.append((targets, variables))
    return calls


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _on(wf: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as True
    return wf.get("on", wf.get(True))


def _steps(wf: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in wf["jobs"].values() for s in job["steps"]]


def _runs(wf: dict[Any, Any]) -> str:
    return "\n".join(s.get("run", "") for s in _steps(wf))


def test_workflow_parses_and_runs_on_a_schedule(workflow: dict[Any, Any]) -> None:
    on = _on(workflow)
    crons = [s["cron"] for s in on["schedule"]]
    assert crons and all(len(c.split()) == 5 for c in crons)
    assert "workflow_dispatch" in on
    assert workflow["permissions"] == {"contents": "read", "actions": "read"}


def test_one_job_per_backend(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["bench"]
    backends = [entry["backend"] for entry in job["strategy"]["matrix"]["include"]]
    assert backends == ["local", "kind"]
    assert job["strategy"]["fail-fast"] is False
    assert job["timeout-minutes"] <= 360
    bench = [c for c in make_calls(_runs(workflow)) if "bench" in c[0]]
    assert bench and all("BACKEND" in variables for _, variables in bench)
    assert "sudo make bench" in _runs(workflow)  # the local backend needs root


def test_kind_pins_match_the_backend(workflow: dict[Any, Any]) -> None:
    env = workflow["env"]
    assert env["ISTIO_VERSION"] == versions.ISTIO_VERSION
    assert env["KIND_VERSION"] == versions.KIND_VERSION
    assert env["KUBECTL_VERSION"] == versions.KUBERNETES_VERSION
    assert int(env["REPETITIONS"]) >= 5  # fewer cannot reach p < 0.01 in compare


def test_make_targets_exist_in_the_makefile(workflow: dict[Any, Any]) -> None:
    text = MAKEFILE.read_text()
    targets, variables = makefile_targets(text), makefile_variables(text)
    assert {"bench", "report", "setup", "test"} <= targets  # the parser finds real targets
    calls = make_calls(_runs(workflow))
    used_targets = {t for ts, _ in calls for t in ts}
    used_variables = {v for _, vs in calls for v in vs}
    assert {"bench", "report", "compare", "trend", "gate"} <= used_targets
    assert used_targets <= targets | PENDING_TARGETS
    assert used_variables <= variables | PENDING_VARIABLES
    assert all(ts for ts, _ in calls)  # never a bare `make` (the default goal is setup)


def test_no_pending_makefile_changes_left(workflow: dict[Any, Any]) -> None:
    text = MAKEFILE.read_text()
    calls = make_calls(_runs(workflow))
    assert {t for ts, _ in calls for t in ts} <= makefile_targets(text)
    assert {v for _, vs in calls for v in vs} <= makefile_variables(text)


def test_previous_results_are_downloaded_and_new_ones_uploaded(
        workflow: dict[Any, Any]) -> None:
    steps = _steps(workflow)
    uses = [s.get("uses", "") for s in steps]
    find = next(s for s in steps if "gh run list" in s.get("run", ""))
    assert "--status success" in find["run"] and "GH_TOKEN" in find["env"]
    download = next(s for s in steps if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["run-id"] == "${{ steps.previous.outputs.run_id }}"
    assert download["with"]["name"] == "nightly-${{ matrix.backend }}"
    assert download.get("continue-on-error") is True  # the first night has nothing to get
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert {u["with"]["name"] for u in uploads} == {"nightly-${{ matrix.backend }}",
                                                    "report-${{ matrix.backend }}"}
    assert all(u["if"].startswith("always()") for u in uploads)
    history = next(u for u in uploads if u["with"]["name"].startswith("nightly-"))
    assert "history/" in history["with"]["path"]
    report = next(u for u in uploads if u["with"]["name"].startswith("report-"))
    assert "report.html" in report["with"]["path"] and "smp.json" in report["with"]["path"]
    assert uses.index(download["uses"]) < uses.index(uploads[0]["uses"])


def test_a_regression_fails_the_job_after_the_uploads(workflow: dict[Any, Any]) -> None:
    steps = _steps(workflow)
    names = [s.get("name", "") for s in steps]
    compare = next(s for s in steps if "make compare" in s.get("run", ""))
    assert "--json compare.json" in compare["run"] and compare["id"] == "compare"
    check = next(s for s in steps if "make gate" in s.get("run", ""))
    assert "--json gate.json" in check["run"] and check["id"] == "gate"
    assert "RUNS=history" in check["run"]
    # the gate runs before tonight's run joins the history (its gate.json goes with it)
    assert names.index(check["name"]) < names.index("History and trend")
    gate = steps[-1]
    assert gate["if"] == "steps.gate.outputs.status == 'confirmed'"
    assert "exit 1" in gate["run"]
    last_upload = max(i for i, s in enumerate(steps)
                      if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert last_upload < names.index(gate["name"])


def test_make_calls_parser() -> None:
    calls = make_calls('sudo make bench BACKEND=kind REPETITIONS="5"\n'
                       'make compare RUN_A="$a" RUN_B=b COMPARE_ARGS="--json x" \\\n'
                       '  > out.md 2> err\nfoo && make -C dir report RUN_DIR=x # note\n')
    assert calls == [(["bench"], ["BACKEND", "REPETITIONS"]),
                     (["compare"], ["RUN_A", "RUN_B", "COMPARE_ARGS"]),
                     (["report"], ["RUN_DIR"])]
