"""Pinned versions, labels and time limits of the kube backends (kind and cluster).

Every run records these (see `record()`); change a pin here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench import PREFIX

KIND_VERSION = "v0.29.0"
# The node image published with kind v0.29.0 for Kubernetes 1.33.1 (from its release notes).
NODE_IMAGE = ("kindest/node:v1.33.1@sha256:"
              "050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f")
KUBERNETES_VERSION = "v1.33.1"
ISTIO_VERSION = "1.27.3"
# The Gateway API Istio 1.27.3 is built against (its go.mod: sigs.k8s.io/gateway-api v1.3.0).
GATEWAY_API_VERSION = "v1.3.0"
GATEWAY_API_URL = ("https://github.com/kubernetes-sigs/gateway-api/releases/download/"
                   f"{GATEWAY_API_VERSION}/standard-install.yaml")
# The CRDs of that bundle meshbench relies on, and the annotation each carries with its version.
GATEWAY_API_CRDS = ("gatewayclasses.gateway.networking.k8s.io",
                    "gateways.gateway.networking.k8s.io",
                    "httproutes.gateway.networking.k8s.io")
GATEWAY_API_BUNDLE = "gateway.networking.k8s.io/bundle-version"
# kind's CNI: kindnet (kind's own) or Calico from its manifest (the seed's cluster ran Calico).
CNIS = ("kindnet", "calico")
CALICO_VERSION = "v3.30.2"
CALICO_URL = ("https://raw.githubusercontent.com/projectcalico/calico/"
              f"{CALICO_VERSION}/manifests/calico.yaml")
# kind's default pod subnet, set explicitly when kindnet is off: calico-node reads the pool
# from kubeadm's podSubnet (node/pkg/lifecycle/startup/startup.go, extractKubeadmCIDRs), and
# Calico's own default 192.168.0.0/16 often collides with a home network.
POD_SUBNET = "10.244.0.0/16"
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
NODE_ROLE = "meshbench.io/role"  # on kind nodes: client, server, client-server, spare, istiod
ISTIOD_NODE = "istiod"  # the kind worker that runs istiod alone (meshbench.io/node=istiod)
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


# Requests equal to limits for every container of the run's pods, in every mode, so each
# pod is Guaranteed whether or not a sidecar is injected: the sidecar (and its istio-init)
# gets PROXY through the injector's annotations (injection-template.yaml, "resources"), the
# waypoint's Envoy the same through its Deployment patch. ztunnel keeps its chart's
# requests (200m, 512Mi) and no limit.
APP_RESOURCES = {"cpu": "500m", "memory": "256Mi"}
LOCUST_RESOURCES = {"cpu": "1", "memory": "512Mi"}  # one Locust process: one core at most
LOCUST_MASTER_RESOURCES = {"cpu": "250m", "memory": "256Mi"}
INIT_RESOURCES = {"cpu": "250m", "memory": "256Mi"}  # the pip install of the Locust pods
# Istio's own sidecar limits (global.proxy.resources.limits: 2000m, 1024Mi), requests raised
# to match: pilot-agent sets Envoy's concurrency from the CPU limit when ProxyConfig has
# none (pilot/cmd/pilot-agent/config/config.go, ConstructProxyConfig), so the sidecar and
# the waypoint keep Istio's default 2 worker threads.
PROXY_RESOURCES = {"cpu": "2", "memory": "1Gi"}


def istio_profile(mode: str) -> str | None:
    """The istioctl profile a mode needs; None for baseline. Sidecars run on `minimal`, which
    is `default` without the istio-ingressgateway (manifests/profiles/minimal.yaml), because
    the `ambient` profile also turns on HBONE for sidecars (a fairness trap); `ambient`
    installs no ingress gateway either (manifests/profiles/ambient.yaml)."""
    return {"sidecar": "minimal", "ambient": "ambient", "waypoint": "ambient"}.get(mode)


_TAG = re.compile(r"^(?P<version>\d+\.\d+\.\d+(?:-(?:alpha|beta|rc)\.\d+)?)"
                  r"(?:-(?P<variant>distroless|debug))?$")


def image_version(image: str) -> tuple[str, str]:
    """(Istio version, variant) from an istiod or proxy image reference. The charts write
    `hub/pilot:<tag>-<variant>` when global.variant is set, which the ambient profile does
    (manifests/helm-profiles/ambient.yaml: variant distroless), so
    "docker.io/istio/pilot:1.27.3-distroless" -> ("1.27.3", "distroless"). A digest is
    ignored; a tag that is no Istio release comes back whole, variant "" ("" without a tag)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "", ""
    tag = last.rsplit(":", 1)[1]
    m = _TAG.match(tag)
    return (m["version"], m["variant"] or "") if m else (tag, "")


def record(cni: str = "kindnet") -> dict[str, str]:
    """The kind backend's pins, for the run manifest."""
    out = {"kind": KIND_VERSION, "node_image": NODE_IMAGE, "kubernetes": KUBERNETES_VERSION,
           "istio": ISTIO_VERSION, "gateway_api": GATEWAY_API_VERSION,
           "app_image": APP_IMAGE, "locust_image": LOCUST_IMAGE, "cni": cni}
    if cni == "calico":
        out["calico"] = CALICO_VERSION
    return out
