"""One registry of config changes (bench/changes.py): every change a scenario can name is
implemented by every backend, and no change's name is written anywhere else in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import changes
from bench import scenario as scen
from bench.backends.kube import push as kube_push
from bench.controlplane import pushrules
from bench.errors import UserError
from bench.experiments import EXPERIMENTS, changed_mesh
from bench.mesh import build

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(changes.CHANGES))
def test_every_change_is_implemented_by_every_backend(name: str) -> None:
    mesh = build(scen.read("quick"), "sidecar")
    after = changed_mesh(mesh, name)
    assert after != mesh  # the local backend changes its mesh
    assert kube_push.experiment_objects(mesh, name, "mb-x", {"a": "b"})  # the kube objects
    keys = pushrules.change_keys(name, "ambient", "ns", "h.ns.svc.cluster.local", "p")
    assert keys  # the push table knows what istiod would see
    assert EXPERIMENTS[name] == changes.CHANGES[name].description
    # an authorization policy is what claim (c) counts: only the changes that add one do
    assert (len(after.policies) > len(mesh.policies)) == changes.CHANGES[name].adds_policy


def test_an_unknown_change_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(UserError, match="unknown experiment 'l5_magic'") as e:
        changes.get("l5_magic")
    assert "new_service, l7_route, l4_authz" in e.value.one_line()


def test_no_change_name_is_written_outside_the_registry() -> None:
    names = "|".join(re.escape(n) for n in changes.ISTIOD_CHANGES)
    pattern = re.compile(rf"""["']({names})["']""")
    allowed = {ROOT / "bench" / "changes.py", ROOT / "bench" / "scenario.py"}  # the schema
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
           for p in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "analysis").rglob("*.py")]
           if p not in allowed
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []


def test_the_scenario_schema_names_exactly_the_registry() -> None:
    import typing

    hint = typing.get_type_hints(scen.Scenario)["experiments"]
    (literal,) = typing.get_args(hint)[:1]
    assert set(typing.get_args(literal)) == set(changes.CHANGES)
