"""Backends are told apart by their abilities and methods, never by name, outside
bench/backends/ (issue #23): the run pipeline neither compares a backend's name nor
imports one backend's package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bench.scenario import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_run_pipeline_imports_no_backend_package() -> None:
    bad = []
    for path in _sources("bench/run"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}: {m}" for m in mods
                    if re.match(r"bench\.backends\.(local|kube|kind|cluster)\b", m)]
    assert bad == []


def test_no_backend_name_is_compared_outside_the_backends() -> None:
    names = "|".join(BACKENDS)
    pattern = re.compile(rf"""[!=]=\s*["']({names})["']|["']({names})["']\s*[!=]=""")
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
           for p in _sources("bench/run") + _sources("analysis") + [ROOT / "bench" / "cli.py"]
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []
