"""What the kind and cluster backends share; it imports neither of them.

    orchestrator  KubeBackend: the mode's steps, provision, plan, checks, teardown
    steps         a run as data (Command, Apply, WaitFor, Check, ...) and the plan's rendering
    manifests     the mode's Kubernetes objects from workloads/k8s/
    k8s           the one door to the Kubernetes API (the only importer of `kubernetes`)
    commands      the one runner of external programs (kubectl, kind, istioctl, docker)
    loadgen       one cell's Locust run inside the cluster
    measure       proxy processes, istiod metrics, the metrics API
    push          config-push experiments on real Istio
    versions      pins, labels, resources and time limits
"""
