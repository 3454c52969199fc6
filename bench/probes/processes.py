"""What the resource sampler watches: one `Target` per process, with its role in the mesh.

The orchestrator writes the target list to a JSON file with `write_targets`; the sampler
process re-reads it whenever it changes, so targets can be added and removed mid-run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

TARGETS_VERSION = 1


class ProxyRole(StrEnum):
    """The part a process plays. Values are what lands in rows and labels."""

    SIDECAR = "sidecar"
    ZTUNNEL = "ztunnel"
    WAYPOINT = "waypoint"
    CONTROL_PLANE = "control-plane"
    APP = "app"
    LOADGEN = "loadgen"


# The roles whose summed cost is "the data plane" of a mode.
DATAPLANE_ROLES: frozenset[str] = frozenset(
    {ProxyRole.SIDECAR, ProxyRole.ZTUNNEL, ProxyRole.WAYPOINT}
)


# A proxy's helper process is sampled as its own entity, "<proxy entity>/pilot-agent",
# with the proxy's role: role sums then include it, and counts of proxies do not double.
AGENT_SUFFIX = "/pilot-agent"


def proxy_of(entity: str) -> str:
    """The proxy an entity belongs to: "sidecar/client-0/pilot-agent" -> "sidecar/client-0"."""
    return entity.removesuffix(AGENT_SUFFIX)


@dataclass(frozen=True)
class Target:
    """One process to sample.

    `entity` must be unique within a run and human-readable, e.g. "sidecar/client-0";
    it is the key rows are grouped by. `role` is a `ProxyRole` value. `mode` is the
    data-plane mode the process belongs to ("" when shared by all modes, e.g. the loadgen).
    """

    pid: int
    role: str
    entity: str
    pod: str = ""
    namespace: str = ""
    node: str = ""
    mode: str = ""


def write_targets(path: Path, targets: Iterable[Target]) -> None:
    """Replace the targets file atomically, so a concurrent reader never sees half a file.

    Raises ValueError when two targets share an entity name.
    """
    items = list(targets)
    entities = [t.entity for t in items]
    dupes = sorted({e for e in entities if entities.count(e) > 1})
    if dupes:
        raise ValueError(f"duplicate target entities: {', '.join(dupes)}")
    payload = {"version": TARGETS_VERSION, "targets": [asdict(t) for t in items]}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        # os.replace gives the file a new inode, which the sampler's change check keys on
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_targets(path: Path) -> list[Target]:
    """Read a file written by `write_targets`. Unknown keys raise TypeError."""
    payload = json.loads(Path(path).read_text())
    if payload.get("version") != TARGETS_VERSION:
        raise ValueError(f"{path}: targets version {payload.get('version')!r}")
    return [Target(**item) for item in payload["targets"]]


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
