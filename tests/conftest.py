"""Tests that need root (network namespaces, iptables, Envoy as uid 1337) or BCC are marked;
they run wherever the suite runs as root (CI does) and are skipped with a reason elsewhere."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: run as root (CI does) to include it")
    for item in items:
        if "root" in item.keywords or "bcc" in item.keywords:
            item.add_marker(skip)
