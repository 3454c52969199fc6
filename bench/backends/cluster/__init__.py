"""The cluster backend: an existing Kubernetes cluster with Istio already installed, reached
through an explicit kube context (backend.py: ClusterBackend, context_from). Everything it
shares with the kind backend is in bench.backends.kube; build it with bench.backends.make."""
