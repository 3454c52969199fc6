"""The kind cluster: its config, and whether an existing cluster of that name matches it.

One control plane, one worker per node of the mesh model (two for the default scenario)
and one more worker for istiod alone, every node on the pinned image. Each model worker is
labelled with its model name (meshbench.io/node=node0, ...) so pods are pinned exactly
where the model puts them, and with its role (client, server) for people reading
`kubectl get nodes -L meshbench.io/role`; the extra worker is meshbench.io/node=istiod,
where istiod is pinned (values.pilot.nodeSelector), so the control plane never shares a
node with the client or the servers. Nothing else is pinned there, but DaemonSets
(ztunnel, istio-cni, the CNI) and kind's CoreDNS may run on it too.

With `kind.cni: calico` kind's own CNI (kindnet) is off (networking.disableDefaultCNI)
and the pod subnet is set explicitly; Calico's pinned manifest is applied after the
cluster is created (bench/backends/kind/backend.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from bench.backends.kube import versions
from bench.scenario import Scenario


def node_role(scenario: Scenario, index: int) -> str:
    t = scenario.topology
    roles = [r for r, i in (("client", t.client_node), ("server", t.server_node)) if i == index]
    return "-".join(roles) or "spare"


def worker_labels(scenario: Scenario) -> list[dict[str, str]]:
    """The labels of every worker, in order: the model's nodes, then istiod's."""
    out = [{versions.NODE: f"node{i}", versions.NODE_ROLE: node_role(scenario, i)}
           for i in range(scenario.topology.nodes)]
    return out + [{versions.NODE: versions.ISTIOD_NODE, versions.NODE_ROLE: versions.ISTIOD_NODE}]


def config(scenario: Scenario, name: str) -> dict[str, Any]:
    """The kind.x-k8s.io/v1alpha4 Cluster for `kind create cluster --config`."""
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": versions.NODE_IMAGE}]
    nodes += [{"role": "worker", "image": versions.NODE_IMAGE, "labels": labels}
              for labels in worker_labels(scenario)]
    out: dict[str, Any] = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
                           "name": name, "nodes": nodes}
    if scenario.kind.cni == "calico":
        out["networking"] = {"disableDefaultCNI": True, "podSubnet": versions.POD_SUBNET}
    return out


def config_yaml(scenario: Scenario, name: str) -> str:
    return yaml.safe_dump(config(scenario, name), sort_keys=False)


def context(name: str) -> str:
    """The kubeconfig context kind writes for a cluster."""
    return f"kind-{name}"


def cni_of(daemonsets: Sequence[Mapping[str, Any]]) -> str:
    """The CNI an existing cluster runs, from its kube-system DaemonSets: "kindnet",
    "calico", or "" when neither is there (yet)."""
    names = {d["metadata"]["name"] for d in daemonsets}
    return "calico" if "calico-node" in names else "kindnet" if "kindnet" in names else ""


def mismatches(scenario: Scenario, nodes: Sequence[Mapping[str, Any]],
               cni: str = "") -> list[str]:
    """Why an existing cluster differs from what `config` would create; empty if it
    matches (same worker labels, same kubelet version, and -- when `cni` is known -- the
    scenario's CNI)."""
    out = []
    if cni and cni != scenario.kind.cni:
        out.append(f"it runs {cni}, the scenario wants kind.cni {scenario.kind.cni}")
    want = {lab[versions.NODE]: lab[versions.NODE_ROLE] for lab in worker_labels(scenario)}
    have: dict[str, str] = {}
    for n in nodes:
        labels = n.get("metadata", {}).get("labels", {})
        version = n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        if version and version != versions.KUBERNETES_VERSION:
            out.append(f"node {n['metadata']['name']} runs {version}, not {versions.KUBERNETES_VERSION}")
        if versions.NODE in labels:
            have[labels[versions.NODE]] = labels.get(versions.NODE_ROLE, "")
    if have != want:
        out.append(f"worker labels {sorted(have.items())} differ from {sorted(want.items())}")
    return out
