"""Pinned versions, labels and time limits of the kube backends (kind and cluster).

Every run records these (see `record()`); change a pin here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench import PREFIX

KIND_VERSION = "v0.29.0"
# The node image published with kind v0.29.0 for Kubernetes 1.33.1 (from its release notes).
NODE_IMAGE = ("kindest/node:v1.33.1@sha256:"
              "050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f")
KUBERNETES_VERSION = "v1.33.1"
ISTIO_VERSION = "1.27.3"
GATEWAY_API_VERSION = "v1.3.0"
GATEWAY_API_URL = ("https://github.com/kubernetes-sigs/gateway-api/releases/download/"
                   f"{GATEWAY_API_VERSION}/standard-install.yaml")
# Images the workloads pull. The server runs bench/apps/http_server.py (shipped in a
# ConfigMap), the same app as the local backend; Locust matches the harness's own version.
APP_IMAGE = "python:3.12-slim"
LOCUST_IMAGE = "locustio/locust:2.47.0"
HDRHISTOGRAM_PIP = "hdrhistogram==0.10.8"

DEFAULT_CLUSTER = f"{PREFIX}kind"  # kind context: kind-mb-kind
ISTIO_NS = "istio-system"

# Labels on every object the harness creates.
RUN_ID = "meshbench.io/run-id"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "meshbench"
MODE = "meshbench.io/mode"
NODE = "meshbench.io/node"  # on kind nodes: the mesh model's node name (node0, node1, ...)
NODE_ROLE = "meshbench.io/role"  # on kind nodes: client, server, client-server or spare
POD_KIND = "meshbench.io/kind"  # on pods: client, server, locust-master


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Generous because a first run pulls every image over the network."""

    cluster: float = 300.0
    istio: float = 300.0
    crds: float = 60.0
    workloads: float = 300.0
    request: float = 60.0
    teardown: float = 180.0


DEFAULT_TIMEOUTS = Timeouts()


def istio_profile(mode: str) -> str | None:
    """The istioctl profile a mode needs: sidecars on `default`, because the `ambient`
    profile also turns on HBONE for sidecars (a fairness trap); None for baseline."""
    return {"sidecar": "default", "ambient": "ambient", "waypoint": "ambient"}.get(mode)


def record() -> dict[str, str]:
    """The pins, for the run manifest."""
    return {"kind": KIND_VERSION, "node_image": NODE_IMAGE, "kubernetes": KUBERNETES_VERSION,
            "istio": ISTIO_VERSION, "gateway_api": GATEWAY_API_VERSION,
            "app_image": APP_IMAGE, "locust_image": LOCUST_IMAGE}


def timeouts_record(t: Timeouts) -> dict[str, float]:
    return asdict(t)
