"""Where meshbench finds its own files and puts results, in a source checkout and in an
installed package alike (`pip install .` ships workloads/ as data files under
<prefix>/share/meshbench/workloads, pyproject.toml).

    workloads()      scenarios/, locustfiles/, istiod/, k8s/
    results_root()   results/ of the checkout, else of the working directory
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout, or site-packages
ENV = "MESHBENCH_WORKLOADS"  # another workloads directory, e.g. a team's own scenarios


def workloads() -> Path:
    """The workloads directory: $MESHBENCH_WORKLOADS, else the checkout's, else the one an
    install put under sys.prefix (the checkout's path when none has scenarios/, so that an
    error names where it looked first)."""
    env = os.environ.get(ENV)
    candidates = [Path(env)] if env else []
    candidates += [SOURCE_ROOT / "workloads", Path(sys.prefix) / "share" / "meshbench" /
                   "workloads"]
    return next((c for c in candidates if (c / "scenarios").is_dir()), candidates[0])


def results_root() -> Path:
    """results/ beside the checkout's pyproject.toml; for an installed package, results/
    in the working directory."""
    if (SOURCE_ROOT / "pyproject.toml").is_file():
        return SOURCE_ROOT / "results"
    return Path.cwd() / "results"
