"""meshbench: Istio sidecar vs ambient data planes, measured side by side."""

__version__ = "0.1.0"
PREFIX = "mb-"  # every netns, link, file and label the harness creates carries this
