"""The backends a scenario can name, and `make`, which builds the one a scenario names.

    local/    network namespaces and real Envoys on this host (bench.backends.local.backend)
    kube/     what the kind and cluster backends share: orchestration, manifests, the
              Kubernetes client, measurement, config pushes, the in-cluster load generator
    kind/     a kind cluster the harness creates and reuses (imports kube/)
    cluster/  an existing cluster, explicit context, nothing cluster-wide touched (imports kube/)

    from bench.backends import make
    backend = make(scenario)                  # scenario.backend is "kind" or "cluster"
    backend.preflight()                       # PrerequisiteError: one line with the fix
    print("\\n".join(backend.plan("ambient"))) # every command and manifest, in order
    dep = backend.provision("ambient")        # ... backend.teardown() in a finally

Both kube backends run the load generator inside the cluster: Deployment.load_netns is
None and Deployment.info["load"]["where"] == "in-cluster"; call `backend.start_load(...)`
(same shape as bench.load.driver.run_locust) instead of run_locust.

`make` imports the backend it builds when it is called, so importing any one backend
package never loads the others.
"""

from __future__ import annotations

from bench.backends.base import Backend
from bench.errors import UserError
from bench.scenario import Scenario
from bench.store import new_run_id


def make(scenario: Scenario, *, run_id: str | None = None, context: str | None = None) -> Backend:
    """The backend the scenario names. On kube backends `run_id` labels every object (the
    run's own id; default: a fresh one, as the store makes); `context` is for backend
    cluster (default: MB_CONTEXT)."""
    if scenario.backend == "local":
        from bench.backends.local.backend import LocalBackend

        return LocalBackend(scenario)
    rid = run_id or new_run_id(scenario.name)
    if scenario.backend == "kind":
        from bench.backends.kind.backend import KindBackend

        return KindBackend(scenario, run_id=rid)
    if scenario.backend == "cluster":
        from bench.backends.cluster.backend import ClusterBackend, context_from

        return ClusterBackend(scenario, run_id=rid, context=context_from(scenario, context))
    raise UserError(f"backend {scenario.backend!r} is not a kube backend",
                    hint="backends are local, kind and cluster")
