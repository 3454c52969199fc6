"""A structural check of the waypoint Gateway, for the manifest tests: the Kubernetes JSON
schemas kubernetes-validate ships lack the Gateway API's CRDs, so this checks what
meshbench relies on (class istio-waypoint, one HBONE listener on 15008, labels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.backends.kube.manifests import label_value


def gateway_problems(obj: Mapping[str, Any]) -> list[str]:
    """Structural check of a waypoint Gateway (the Kubernetes JSON schemas lack its CRD)."""
    out: list[str] = []
    if obj.get("apiVersion") != "gateway.networking.k8s.io/v1" or obj.get("kind") != "Gateway":
        out.append("not a gateway.networking.k8s.io/v1 Gateway")
    md, spec = obj.get("metadata", {}), obj.get("spec", {})
    if not md.get("name") or not md.get("namespace"):
        out.append("metadata.name and metadata.namespace are required")
    if md.get("labels", {}).get("istio.io/waypoint-for") not in ("service", "workload", "all"):
        out.append("label istio.io/waypoint-for must be service, workload or all")
    if spec.get("gatewayClassName") != "istio-waypoint":
        out.append("spec.gatewayClassName must be istio-waypoint")
    listeners = spec.get("listeners") or []
    if not listeners:
        out.append("spec.listeners must not be empty")
    for i, lst in enumerate(listeners):
        if not isinstance(lst.get("name"), str) or not lst["name"]:
            out.append(f"listeners[{i}].name is required")
        if not isinstance(lst.get("port"), int) or not 1 <= lst["port"] <= 65535:
            out.append(f"listeners[{i}].port must be 1..65535")
        if (lst.get("protocol"), lst.get("port")) != ("HBONE", 15008):
            out.append(f"listeners[{i}] must be HBONE on 15008 for a waypoint")
    infra = spec.get("infrastructure", {})
    ref = infra.get("parametersRef")
    if ref is not None and (ref.get("group") != "" or ref.get("kind") != "ConfigMap"
                            or not ref.get("name")):
        out.append("infrastructure.parametersRef must name a core ConfigMap")
    for k, val in {**infra.get("labels", {}), **md.get("labels", {})}.items():
        if not isinstance(val, str) or label_value(val) != val:
            out.append(f"label {k}={val!r} is not a valid label value")
    return out
