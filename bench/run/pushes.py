"""A mode's config-push experiments, after its load cells: what each proxy holds
(exposure), then each change of the scenario on top of the previous one, measured by
bench/experiments.py, then what each proxy holds after the changes. A failure ends the
mode's experiments: the failed one and the rest are recorded, and if a process died, the
mode is recorded broken."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.backends.base import Deployment
from bench.errors import BenchError, ModeBroken, StorageError
from bench.experiments import changed_mesh, exposure_samples, run_push, to_samples
from bench.mesh import Mesh
from bench.outcomes import PushOutcome
from bench.probes.lifecycle import ExperimentProbe, one_line
from bench.run.context import RunContext
from bench.store import Cell

# (rep, mode, name, status, reason): one experiment's record in the manifest
Record = Callable[[int, str, str, str, str], None]
# (rep, mode, phase, reason, cells, experiments): the mode broke
Broken = Callable[[int, str, str, str, Sequence[Cell], Sequence[str]], None]


def served_sizes(ctx: RunContext) -> dict[str, dict[str, tuple[int, int]]] | None:
    """Per proxy and xDS type, (bytes, resources) of the snapshot the control plane
    serves it (the local backend; None elsewhere)."""
    xds = ctx.abilities.xds
    if xds is None or xds.controlplane is None:
        return None
    nodes = xds.controlplane.status()["nodes"]
    return {n: {t: (s["config_bytes"], s["resources"]) for t, s in v["types"].items()}
            for n, v in nodes.items()}


def exposure(ctx: RunContext, mesh: Mesh, cell: Cell, state: str = "initial") -> None:
    """What every proxy holds now (the local backend renders and serves it; kube
    backends have no rendered configs: nothing is written)."""
    xds = ctx.abilities.xds
    if xds is None or not xds.configs:
        return
    ctx.store.append(exposure_samples(mesh, xds.configs, cell, state=state,
                                      dump_bytes=xds.config_dump_bytes,
                                      sizes=served_sizes(ctx)))


def run_mode(ctx: RunContext, wire: ExperimentProbe, rep: int, mode: str, dep: Deployment,
             record: Record, broken: Broken) -> None:
    if not dep.mesh.proxies:
        return
    cell = Cell(rep, mode, 0)
    names = list(ctx.s.experiments)
    step = "exposure"
    m0 = ctx.noise_mark()
    try:
        ctx.phase(rep, mode, "experiment", experiment="exposure")
        exposure(ctx, dep.mesh, cell)
        mesh = dep.mesh
        for name in names:
            step = name
            ctx.phase(rep, mode, "experiment", experiment=name)
            probe = wire.for_experiment(rep, mode, name)
            outcome = run_push(ctx.abilities, mesh, name,
                               timeout_s=ctx.s.timing.ready_timeout_s, wire=probe,
                               broken=lambda: ctx.backend.check(dep))
            dead = ctx.backend.check(dep)
            if dead:  # died during the push: what was measured is not trusted
                raise ModeBroken(dead[0])
            if outcome.kernel_skip and probe is not None:
                wire.lost(rep, mode, name, outcome.kernel_skip)
            ctx.store.append(to_samples(outcome, cell))
            ctx.progress(progress_line(rep, mode, name, outcome))
            record(rep, mode, name, "ok", "")
            mesh = changed_mesh(mesh, name)  # the next change applies on top of this one
        step = "exposure after the changes"
        if names:
            exposure(ctx, mesh, cell, state="after_changes")
    except StorageError:
        raise
    except (BenchError, OSError) as e:
        dead = ctx.backend.check(dep)
        reason = dead[0] if dead else one_line(e)
        if step in names:
            record(rep, mode, step, "failed", reason)
        left = names[names.index(step) + 1:] if step in names else (
            names if step == "exposure" else [])
        if dead:
            broken(rep, mode, f"experiment {step}", reason, [], left)
        else:
            # what the proxies hold is no longer known: no later change, no "after"
            for name in left:
                record(rep, mode, name, "skipped", f"experiment {step} failed: {reason}")
            ctx.progress(f"r{rep} {mode}: experiment {step} failed: {reason}")
    finally:
        wire.stop()
        # the machine's noise over the mode's experiments, one window (a change takes
        # well under a sampler interval)
        ctx.store.append(ctx.noise(cell, m0, "experiment")[0])


def progress_line(rep: int, mode: str, name: str, outcome: PushOutcome) -> str:
    conv = max(outcome.converge_ms.values(), default=0.0)
    reached = (f"{outcome.bytes_total} B, last ACK after {conv:.0f} ms"
               if outcome.updated else "no proxy's config changed")
    changed = (f" ({len(outcome.changed)} changed)"
               if len(outcome.changed) != len(outcome.updated) else "")
    kernel = (f"; kernel: {outcome.kernel.sockets} sockets, {outcome.kernel.bytes} B"
              if outcome.kernel is not None else "")
    return (f"r{rep} {mode}: {name}: {len(outcome.updated)}/{len(outcome.proxies)} proxies "
            f"updated{changed}, {reached}{kernel}"
            + (f", {len(outcome.nacks)} NACKs" if outcome.nacks else ""))
