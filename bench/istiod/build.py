"""The real control plane's binaries, built on demand from the Go module proxy and cached
outside the repository, keyed by version.

- `pilot-discovery` (istiod) from module istio.io/istio. The proxy serves only
  pseudo-versions of Istio's main branch (Istio's tags, "1.27.3", are not semver); the pinned
  one is ISTIO_VERSION, `meshbench istiod build --istio latest` resolves the newest.
- `kube-apiserver` from k8s.io/kubernetes, through the wrapper module in
  bench/istiod/apiserver (its go.mod is generated here: each staging module replaced by its
  published v0.X.Y, the minor Istio's own k8s.io requirements use).
- `kine` (its SQLite driver needs cgo) as the API server's store: Debian's etcd is older
  than Kubernetes 1.36 accepts.
- `mb-xdsload`, the project's own simulated proxies (bench/istiod/xdsload), keyed by a hash
  of its sources.

Binaries go to $MB_CACHE (default ~/.cache/meshbench)/bin/<name>@<version>/<name>; Go's own
module and build caches stay where `go env` puts them. Nothing here runs unless asked:
the default `make bench` never needs Go.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import PrerequisiteError

ISTIO_VERSION = "v0.0.0-20260827124520-eed52ebb66ad"
KUBERNETES_VERSION = "v1.36.1"  # Istio's go.mod requires k8s.io/* v0.36.1
KINE_VERSION = "v0.17.6"
HERE = Path(__file__).resolve().parent
RETRY = "meshbench istiod build"


def cache_root() -> Path:
    return Path(os.environ.get("MB_CACHE") or Path.home() / ".cache" / "meshbench")


@dataclass(frozen=True)
class Binary:
    """One binary the real control plane needs."""

    name: str
    module: str
    version: str
    package: str  # what `go build` builds (a package path, or "." in a module dir)
    cgo: bool = False

    @property
    def path(self) -> Path:
        return cache_root() / "bin" / f"{self.name}@{self.version}" / self.name

    @property
    def built(self) -> bool:
        return self.path.is_file() and os.access(self.path, os.X_OK)


def pseudo_commit(version: str) -> tuple[str, str]:
    """(commit, UTC date) of a Go pseudo-version v0.0.0-YYYYMMDDhhmmss-<12 hex>."""
    m = re.fullmatch(r"v\d+\.\d+\.\d+-(?:[0-9A-Za-z.]+\.)?(\d{14})-([0-9a-f]{12})", version)
    if not m:
        return "", ""
    ts = m.group(1)
    return m.group(2), f"{ts[:4]}-{ts[4:6]}-{ts[6:8]}T{ts[8:10]}:{ts[10:12]}:{ts[12:]}Z"


def _source_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.suffix in (".go", ".mod", ".sum"):
            h.update(p.relative_to(directory).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def binaries(istio: str = ISTIO_VERSION) -> dict[str, Binary]:
    kube_minor = KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    return {
        "pilot-discovery": Binary("pilot-discovery", "istio.io/istio", istio,
                                  "istio.io/istio/pilot/cmd/pilot-discovery"),
        "kube-apiserver": Binary("kube-apiserver", "k8s.io/kubernetes", KUBERNETES_VERSION,
                                 f"wrapper module, staging modules at {kube_minor}"),
        "kine": Binary("kine", "github.com/k3s-io/kine", KINE_VERSION,
                       "github.com/k3s-io/kine", cgo=True),
        "mb-xdsload": Binary("mb-xdsload", "meshbench/xdsload",
                             _source_hash(HERE / "xdsload"), "."),
    }


def status(istio: str = ISTIO_VERSION) -> list[tuple[Binary, bool]]:
    return [(b, b.built) for b in binaries(istio).values()]


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise PrerequisiteError("the real-istiod binaries need Go (1.26 or newer), not on PATH",
                                hint="install Go from your distribution or go.dev, then "
                                     f"{RETRY}")
    return go


@dataclass
class BuildRecord:
    """What one build cost: wall time and the peak of the machine's used memory over it, above
    what was used at its start (from /proc/meminfo, so every compiler process counts)."""

    name: str
    version: str
    wall_s: float = 0.0
    host_mem_peak_gib: float = 0.0
    cached: bool = False


def _mem_used_gib() -> float:
    info: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        info[k] = int(v.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024 / 1024


class _Watch:
    """Samples used memory once a second and prints a progress line every 30 s."""

    def __init__(self, label: str, say: Callable[[str], None]) -> None:
        self.label, self.say = label, say
        self.base = _mem_used_gib()
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        last = self.t0
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, _mem_used_gib() - self.base)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                self.say(f"building {self.label}: {last - self.t0:.0f} s, "
                         f"{self.peak:.1f} GiB above the start")

    def __enter__(self) -> _Watch:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _run_go(args: list[str], cwd: Path, env: dict[str, str], what: Binary) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise PrerequisiteError(
            f"building {what.name} from {what.module}@{what.version} failed: {tail}",
            hint=f"check the Go module proxy is reachable (go env GOPROXY), then {RETRY} "
                 f"{what.name}")


def module_files(module: str, version: str) -> tuple[Path, Path]:
    """(source directory, go.mod) of a module as `go mod download` leaves them; one line
    naming the module and how to retry when it cannot be fetched."""
    out = subprocess.run([_go(), "mod", "download", "-json", f"{module}@{version}"],
                         capture_output=True, text=True,
                         env={**os.environ, "GOFLAGS": "-mod=mod"})
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or out.stdout.strip().splitlines() or ["?"])
        raise PrerequisiteError(f"cannot fetch {module}@{version}: {why[-1]}",
                                hint=f"check the Go module proxy (go env GOPROXY), then {RETRY}")
    info = json.loads(out.stdout)
    return Path(info["Dir"]), Path(info["GoMod"])


def _apiserver_gomod() -> str:
    """The wrapper's go.mod: k8s.io/kubernetes, each of its staging modules at v0.X.Y."""
    gomod = module_files("k8s.io/kubernetes", KUBERNETES_VERSION)[1].read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", gomod, re.M)))
    minor = KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    go_line = re.search(r"^go (\S+)", gomod, re.M)
    lines = ["module meshbench/kube-apiserver", "",
             f"go {go_line.group(1) if go_line else '1.26'}", "",
             f"require k8s.io/kubernetes {KUBERNETES_VERSION}", "", "replace ("]
    lines += [f"\t{m} => {m} {minor}" for m in staging]
    return "\n".join(lines + [")", ""])


def build(name: str, istio: str = ISTIO_VERSION, force: bool = False,
          say: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> BuildRecord:
    """Build one binary into the cache unless it is there; returns what it cost."""
    b = binaries(istio)[name]
    rec = BuildRecord(name, b.version)
    if b.built and not force:
        rec.cached = True
        return rec
    go = _go()
    env = {**os.environ, "CGO_ENABLED": "1" if b.cgo or name == "kine" else "0",
           "GOFLAGS": "-mod=mod -p=2"}
    b.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = b.path.with_name(b.name + ".partial")
    work = cache_root() / "work" / f"{b.name}@{b.version}"
    work.mkdir(parents=True, exist_ok=True)
    say(f"building {b.name} from {b.module}@{b.version} (cold: minutes; progress every 30 s)")
    with _Watch(b.name, say) as watch:
        ldflags = "-s -w"
        if name == "pilot-discovery":
            commit, _ = pseudo_commit(b.version)
            ldflags += f" -X istio.io/istio/pkg/version.buildGitRevision={commit}"
            (work / "go.mod").write_text("module meshbench/istiod\n\ngo 1.26\n")
            _run_go([go, "get", f"{b.package}@{b.version}"], work, env, b)
            _run_go([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), b.package],
                    work, env, b)
        elif name == "kine":
            (work / "go.mod").write_text("module meshbench/kine\n\ngo 1.26\n")
            _run_go([go, "get", f"{b.module}@{b.version}"], work, env, b)
            _run_go([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), b.package],
                    work, env, b)
        elif name == "kube-apiserver":
            (work / "go.mod").write_text(_apiserver_gomod())
            shutil.copy(HERE / "apiserver" / "main.go", work / "main.go")
            _run_go([go, "mod", "tidy"], work, env, b)
            _run_go([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), "."],
                    work, env, b)
        else:  # our own module, in the repository
            _run_go([go, "build", "-trimpath", "-o", str(tmp), "."], HERE / "xdsload",
                    {**env, "GOFLAGS": "-p=2"}, b)
        tmp.replace(b.path)
    rec.wall_s = round(time.monotonic() - watch.t0, 1)
    rec.host_mem_peak_gib = round(watch.peak, 2)
    say(f"built {b.name} in {rec.wall_s:.0f} s: {b.path}")
    return rec


def require(names: tuple[str, ...] = ("kine", "kube-apiserver", "pilot-discovery",
                                      "mb-xdsload"), istio: str = ISTIO_VERSION,
            auto_build: bool = True) -> dict[str, Path]:
    """Paths of the binaries, building those absent (or one line naming how to)."""
    out = {}
    for n in names:
        b = binaries(istio)[n]
        if not b.built:
            if not auto_build:
                raise PrerequisiteError(f"{n} ({b.module}@{b.version}) is not built",
                                        hint=f"{RETRY} (or make istiod-build)")
            build(n, istio)
        out[n] = b.path
    return out


def resolve_latest_istio() -> str:
    """The newest pseudo-version of istio.io/istio the module proxy serves."""
    go = _go()
    out = subprocess.run([go, "list", "-m", "-json", "istio.io/istio@latest"],
                         capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"},
                         cwd=cache_root() if cache_root().exists() else None)
    if out.returncode != 0:
        raise PrerequisiteError("cannot resolve istio.io/istio@latest: "
                                + (out.stderr.strip().splitlines() or ["no answer"])[-1],
                                hint="check the Go module proxy (go env GOPROXY)")
    return str(json.loads(out.stdout)["Version"])
