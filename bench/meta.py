"""Run metadata: versions, host, git state. What makes two runs comparable or not."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import bench

REPO = Path(__file__).resolve().parent.parent


def _pkg(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _bcc_version() -> str:
    try:
        import bcc  # Debian's python3-bpfcc; importing it does not start anything

        return str(getattr(bcc, "__version__", "unknown"))
    except Exception as e:  # any import failure is a fact to record, not to hide
        return f"unavailable ({type(e).__name__})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError as e:
        return f"unknown ({e.strerror})"
    return platform.processor() or "unknown"


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.TimeoutExpired):
        return {"sha": "unknown", "dirty": None}
    return {"sha": sha or "unknown", "dirty": dirty}


def host() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass  # memory stays 0 = unknown; nothing measured depends on it
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
    }


def harness_version() -> str:
    """The harness's own version: the package version and the git commit it ran from
    ("0.1.0+g86e2705c1a2b", ".dirty" when the tracked files had changes)."""
    g = git_state()
    if g["sha"] == "unknown":
        return f"{bench.__version__}+unknown"
    return f"{bench.__version__}+g{g['sha'][:12]}" + (".dirty" if g["dirty"] else "")


def versions(envoy: str) -> dict[str, str]:
    return {
        "harness": harness_version(),
        "python": sys.version.split()[0],
        "envoy": envoy,
        "locust": _pkg("locust"),
        "hdrhistogram": _pkg("hdrhistogram"),
        "psutil": _pkg("psutil"),
        "pandas": _pkg("pandas"),
        "bcc": _bcc_version(),
        "kernel": platform.release(),
    }
