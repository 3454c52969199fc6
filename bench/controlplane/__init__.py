"""The local backend's xDS control plane: a real gRPC ADS server that serves each proxy its
listeners and clusters, pushes changes, and accounts every send and ACK.

It imports no backend: a backend renders each proxy's config with envoy_config (also for
static bootstraps) and serves it through this package.

Modules:
  envoy_config  the mesh model -> each proxy's Istio-shaped Envoy config (JSON dicts)
  resources  ProxyConfig dicts -> Envoy protobufs; the ADS bootstrap a proxy starts from
  snapshot   one proxy's resources, serialised once, with a content digest
  accounting send/ACK/NACK records, kept in memory and appended to a JSON-lines events file
  server     the Aggregated Discovery Service (State of the World) and its push logic
  api        the control API (JSON lines on a Unix socket) the orchestrator drives
  client     ControlPlane: start/stop the server process and call its control API

Run it as its own process, so that its CPU time is attributable as istiod's is:
    python -m bench.controlplane --xds-socket X --control-socket C --events E.jsonl
"""
