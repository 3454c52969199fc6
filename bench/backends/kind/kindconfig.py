"""The kind cluster: its config, and whether an existing cluster of that name matches it.

One control plane plus one worker per node of the mesh model (two for the default
scenario), every node on the pinned image. Each worker is labelled with its model name
(meshbench.io/node=node0, ...) so pods are pinned exactly where the model puts them, and
with its role (client, server) for people reading `kubectl get nodes -L meshbench.io/role`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from bench.backends.kind import versions as v
from bench.scenario import Scenario


def node_role(scenario: Scenario, index: int) -> str:
    t = scenario.topology
    roles = [r for r, i in (("client", t.client_node), ("server", t.server_node)) if i == index]
    return "-".join(roles) or "spare"


def config(scenario: Scenario, name: str) -> dict[str, Any]:
    """The kind.x-k8s.io/v1alpha4 Cluster for `kind create cluster --config`."""
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": v.NODE_IMAGE}]
    for i in range(scenario.topology.nodes):
        nodes.append({"role": "worker", "image": v.NODE_IMAGE,
                      "labels": {v.NODE: f"node{i}", v.NODE_ROLE: node_role(scenario, i)}})
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": name,
            "nodes": nodes}


def config_yaml(scenario: Scenario, name: str) -> str:
    return yaml.safe_dump(config(scenario, name), sort_keys=False)


def context(name: str) -> str:
    """The kubeconfig context kind writes for a cluster."""
    return f"kind-{name}"


def mismatches(scenario: Scenario, nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why an existing cluster's nodes differ from what `config` would create; empty if
    they match (same worker labels, same kubelet version)."""
    want = {f"node{i}": node_role(scenario, i) for i in range(scenario.topology.nodes)}
    have: dict[str, str] = {}
    out = []
    for n in nodes:
        labels = n.get("metadata", {}).get("labels", {})
        version = n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        if version and version != v.KUBERNETES_VERSION:
            out.append(f"node {n['metadata']['name']} runs {version}, not {v.KUBERNETES_VERSION}")
        if v.NODE in labels:
            have[labels[v.NODE]] = labels.get(v.NODE_ROLE, "")
    if have != want:
        out.append(f"worker labels {sorted(have.items())} differ from {sorted(want.items())}")
    return out
