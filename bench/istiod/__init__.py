"""Istio's real control plane on one host, for claims (b) and (c): istiod, kube-apiserver and
kine built from the Go module proxy (build.py), started on loopback (controlplane.py), a
simulated cluster written into the API server (cluster.py), simulated proxies as xDS clients
(proxies.py, mb-xdsload in xdsload/), the changes as Istio objects (changes.py), and the
sweep that measures them (sweep.py). The default `make bench` never imports this package."""
