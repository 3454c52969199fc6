"""What a config-push experiment found, whichever backend ran it: the result type shared by
bench/experiments.py (the local control plane's accounting) and bench/backends/kube/push.py
(istiod's metrics and syncz), so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.probes.pushwire import KernelPush


@dataclass(frozen=True)
class PushOutcome:
    experiment: str
    mode: str
    proxies: tuple[str, ...]  # every proxy of the mode
    updated: tuple[str, ...]  # those the control plane sent something to
    bytes_by_proxy: dict[str, int] = field(default_factory=dict)
    sends_by_proxy: dict[str, int] = field(default_factory=dict)
    converge_ms: dict[str, float] = field(default_factory=dict)  # change -> last ACK
    nacks: tuple[str, ...] = ()
    stragglers: dict[str, Any] = field(default_factory=dict)
    cp_cpu_s: float = 0.0
    applied: dict[str, int] = field(default_factory=dict)  # Envoy's update_success delta
    changed: tuple[str, ...] = ()  # those whose rendered config differs after the change
    scoped: tuple[str, ...] = ()  # pushed by Istio's decision although their config is equal
    pushed: tuple[str, ...] = ()  # pushed by Istio's decision (sent something or not)
    bytes_by_type: dict[str, dict[str, int]] = field(default_factory=dict)  # role -> type -> B
    datapath_bytes_by_proxy: dict[str, int] = field(default_factory=dict)  # ztunnel Envoys
    unplanned: dict[str, list[str]] = field(default_factory=dict)  # sent outside the decision
    debounce_ms: float = 0.0
    render_s: float = 0.0  # the harness building every proxy's config (Python)
    convert_s: float = 0.0  # the control plane turning them into protobuf
    send_to_ack_ms: float = 0.0  # first send of the change -> last ACK
    kernel: KernelPush | None = None  # what the control plane's process wrote (BCC)
    kernel_skip: str = ""  # why there is no kernel view
    istiod: dict[str, float] = field(default_factory=dict)  # kube backends: metrics deltas
    proxies_cpu_s: float | None = None  # CPU all proxies spent from the change to the last ACK
    view: str = "control-plane"  # whose accounting: our control plane's, or "istiod"

    roles: dict[str, str] = field(default_factory=dict)  # proxy -> role

    @property
    def bytes_total(self) -> int:
        if not self.bytes_by_proxy and self.istiod:
            return int(self.istiod.get("config_bytes", 0))
        return sum(self.bytes_by_proxy.values())
