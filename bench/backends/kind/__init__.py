"""The kind backend: what is kind's own -- creating, checking and deleting the kind cluster
(backend.py) and its config (kindconfig.py). Everything it shares with the cluster backend
is in bench.backends.kube; build it with bench.backends.make or KindBackend directly."""
