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

import os
from typing import Any

from bench.backends.base import Backend
from bench.errors import UserError
from bench.scenario import BACKENDS, Scenario
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



def teardown_all(name: str, context: str | None = None, kube: Any = None) -> list[str]:
    """`meshbench teardown --all` for backend `name`: remove everything of meshbench's it
    can find, and only that (local: processes in our namespaces by PID, the namespaces,
    the runtime directory; kind: clusters named mb-*; cluster: namespaces labelled
    managed-by=meshbench on the named context, nothing cluster-wide). Returns one line per
    thing removed, or one line saying there was nothing."""
    if name == "kind":
        from bench.backends.kind.backend import delete_clusters
        from bench.backends.kube.commands import SubprocessCommands

        gone = delete_clusters(SubprocessCommands())
        return [f"kind cluster {c}" for c in gone] or ["no kind cluster named mb-*"]
    if name == "cluster":
        from bench.backends.cluster.backend import CONTEXT_ENV
        from bench.backends.kube.k8s import Client, SystemClock
        from bench.backends.kube.orchestrator import delete_all_runs

        context = context or os.environ.get(CONTEXT_ENV, "")
        if not context:
            raise UserError("teardown --backend cluster needs an explicit kube context",
                            hint=f"--context NAME or {CONTEXT_ENV}=NAME (kubectl config "
                                 "get-contexts)")
        gone = delete_all_runs(kube or Client(context), SystemClock())
        return gone or [f"no namespace of meshbench's on context {context}"]
    if name != "local":
        raise UserError(f"unknown backend {name!r}", hint=f"backends are {', '.join(BACKENDS)}")
    if os.geteuid() != 0:
        raise UserError("teardown needs root", hint="sudo make teardown")
    from bench.backends.local.backend import remove_all

    return remove_all() or ["nothing of meshbench's was left"]
