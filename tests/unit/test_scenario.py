from __future__ import annotations

from pathlib import Path

import pytest

from bench import scenario as scen
from bench.errors import ScenarioError


def test_quick_scenario_loads_with_all_modes() -> None:
    s = scen.read("quick")
    assert s.modes == scen.MODES
    assert s.topology.client_node != s.topology.server_node
    assert s.load.levels == (200, 500)
    assert len(s.hash) == 16


def test_unknown_key_names_file_key_and_allowed(tmp_path: Path) -> None:
    p = tmp_path / "typo.yaml"
    p.write_text("load:\n  conections: 4\n")
    with pytest.raises(ScenarioError) as e:
        scen.read(str(p))
    msg = e.value.one_line()
    assert "typo.yaml" in msg and "load.conections" in msg and "connections" in msg


def test_bad_mode_value_lists_allowed(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("modes: [sidecar, ambiant]\n")
    with pytest.raises(ScenarioError, match=r"modes\[1\].*ambiant") as e:
        scen.read(str(p))
    assert "waypoint" in e.value.one_line()


@pytest.mark.parametrize("yaml_text, fragment", [
    ("repetitions: 0\n", "repetitions"),
    ("load:\n  levels: [200, -1]\n", "load.levels[1]"),
    ("load:\n  levels: [200, 200]\n", "duplicate"),
    ("topology:\n  nodes: 2\n  server_node: 2\n", "server_node"),
    ("timing:\n  window_s: fast\n", "timing.window_s"),
    ("probes:\n  resources:\n    interval_s: 0.01\n", "10 Hz"),
    ("- just\n- a list\n", "mapping"),
    ("proxy:\n  concurrency: true\n", "whole number"),
])
def test_bad_values_are_rejected(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ScenarioError, match=None) as e:
        scen.read(str(p))
    assert fragment in e.value.one_line()


def test_unknown_scenario_name_lists_known_ones() -> None:
    with pytest.raises(ScenarioError) as e:
        scen.read("quik")
    assert "quick" in e.value.one_line()


def test_parse_modes() -> None:
    assert scen.parse_modes("baseline, sidecar") == ("baseline", "sidecar")
    with pytest.raises(ScenarioError, match="unknown mode 'sidcar'"):
        scen.parse_modes("sidcar")


def test_hash_changes_with_content_not_with_order_of_keys(tmp_path: Path) -> None:
    a = scen.from_dict({"name": "x", "repetitions": 3, "seed": 2})
    b = scen.from_dict({"seed": 2, "name": "x", "repetitions": 3})
    c = scen.from_dict({"name": "x", "repetitions": 4, "seed": 2})
    assert a.hash == b.hash != c.hash


def test_overrides_are_validated() -> None:
    s = scen.read("quick", modes=["baseline", "sidecar"])
    assert s.modes == ("baseline", "sidecar")
    with pytest.raises(ScenarioError):
        scen.read("quick", repetitions=-2)


def test_round_trip_through_dict_keeps_empty_optional_lists() -> None:
    s = scen.read("quick")
    again = scen.from_dict(s.to_dict())
    assert again == s and again.hash == s.hash
    assert again.sweep.pods_per_service == ()
    assert again.experiments == ("new_service", "l7_route", "l4_authz")


@pytest.mark.parametrize("yaml_text, fragment", [
    ("modes: []\n", "modes must not be empty"),
    ("load:\n  levels: []\n", "load.levels must not be empty"),
    ("experiments: [new_service]\nproxy: {config_source: static}\n", "config_source: xds"),
    ("experiments: [new_servise]\nproxy: {config_source: xds}\n", "new_servise"),
])
def test_empty_required_lists_and_experiment_checks(tmp_path: Path, yaml_text: str,
                                                    fragment: str) -> None:
    p = tmp_path / "e.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ScenarioError) as e:
        scen.read(str(p))
    assert fragment in e.value.one_line()
