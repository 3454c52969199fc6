"""The kube backends' packages: kube/ holds what kind/ and cluster/ share and imports neither,
each imports alone in a fresh interpreter, and no product module imports test code."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BACKENDS = REPO / "bench" / "backends"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("package,forbidden", [
    ("kube", ("bench.backends.kind", "bench.backends.cluster")),
    ("kind", ("bench.backends.cluster",)),
    ("cluster", ("bench.backends.kind",)),
])
def test_no_import_between_sibling_backends(package: str, forbidden: tuple[str, ...]) -> None:
    found = {f"{p.relative_to(REPO)}: {m}" for p in (BACKENDS / package).rglob("*.py")
             for m in _imports(p) if m.startswith(forbidden)}
    assert not found


@pytest.mark.parametrize("modules,absent", [
    (["bench.backends.kube." + p.stem for p in sorted((BACKENDS / "kube").glob("*.py"))],
     ["bench.backends.kind", "bench.backends.cluster"]),
    (["bench.backends.kind", "bench.backends.kind.backend"], ["bench.backends.cluster"]),
    (["bench.backends.cluster", "bench.backends.cluster.backend"], ["bench.backends.kind"]),
])
def test_each_backend_package_imports_alone(modules: list[str], absent: list[str]) -> None:
    """In a fresh interpreter, so that an import cycle or a package that only works after
    another was imported fails here."""
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout))
    assert set(modules) <= loaded
    assert not [m for m in absent if m in loaded]


def test_no_product_module_imports_test_code() -> None:
    found = {f"{p.relative_to(REPO)}: {m}" for p in (REPO / "bench").rglob("*.py")
             for m in _imports(p) if m == "tests" or m.startswith("tests.")}
    assert not found
