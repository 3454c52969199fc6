"""An Envoy's stats from its admin endpoint, for tests of loopback Envoys
(bench.backends.local.loopback.Envoy)."""

from __future__ import annotations

import json

from bench.backends.local.loopback import Envoy


def admin_stats(envoy: Envoy, pattern: str = "") -> dict[str, float | str]:
    """Counters, gauges and text readouts (histograms left out), optionally filtered by
    a regex as admin's `filter=` does."""
    query = "/stats?format=json" + (f"&filter={pattern}" if pattern else "")
    status, body = envoy.get(query)
    if status != 200:
        raise OSError(f"{envoy.node_id}: {query} answered {status}")
    return {s["name"]: s["value"] for s in json.loads(body).get("stats", [])
            if "value" in s}
