"""Tests that need root (network namespaces, iptables, Envoy as uid 1337) or BCC are marked;
they run wherever the suite runs as root (CI does) and are skipped with a reason elsewhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/fixtures/make_fixture.py fabricates run directories for the analysis tests
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
# the repository root, so `tests.support` (fakes and helpers) imports from any working directory
REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: run as root (CI does) to include it")
    for item in items:
        if "root" in item.keywords or "bcc" in item.keywords:
            item.add_marker(skip)
