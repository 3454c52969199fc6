"""A run as data: the ordered steps a kube backend executes, which `render` prints as the plan.

Provision executes exactly the list `plan` prints, so what a user reviews is what runs.
A step with `unless` is skipped when that named condition holds at run time (e.g. the
cluster already exists); the plan shows the condition instead of guessing its value.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.backends.kube.k8s import WaitSpec, name_of
from bench.backends.kube.manifests import source_files


@dataclass(frozen=True)
class Command:
    """An external command, through the backend's Commands runner; must exit 0."""

    argv: tuple[str, ...]
    stdin: str = ""
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Apply:
    """One object, by server-side apply through the Kubernetes client."""

    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class WaitFor:
    spec: WaitSpec


@dataclass(frozen=True)
class Check:
    """A named check the backend implements (it raises ProvisionError when it fails)."""

    name: str
    text: str


@dataclass(frozen=True)
class Start:
    """A background command (e.g. a port-forward) that runs until `until`."""

    name: str
    argv: tuple[str, ...]
    until: str = "teardown"


@dataclass(frozen=True)
class DeleteByLabel:
    api_version: str
    kind: str
    selector: str
    namespace: str = ""
    name_prefix: str = ""


@dataclass(frozen=True)
class Note:
    """Only printed: what happens later (per cell), or what a step depends on."""

    text: str


Action = Command | Apply | WaitFor | Check | Start | DeleteByLabel | Note


@dataclass(frozen=True)
class Step:
    section: str
    action: Action
    unless: str = ""  # a key of the backend's conditions


@dataclass(frozen=True)
class Condition:
    text: str
    holds: Callable[[], bool] = field(compare=False)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so embedded YAML reads as YAML."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _yaml(obj: Mapping[str, Any]) -> str:
    shown = dict(obj)
    files = source_files(obj)
    if files:  # file copies are named, not inlined: the plan stays readable and stable
        shown["data"] = {k: (f"<contents of {files[k]}>" if k in files else val)
                         for k, val in obj.get("data", {}).items()}
    return yaml.dump(shown, Dumper=_Dumper, sort_keys=False, width=100).rstrip("\n")


def _command(argv: Iterable[str], stdin: str = "") -> str:
    line = "$ " + shlex.join(argv)
    return f"{line} <<'EOF'\n{stdin.rstrip()}\nEOF" if stdin else line


def render_action(a: Action) -> str:
    if isinstance(a, Command):
        return _command(a.argv, a.stdin)
    if isinstance(a, Apply):
        m = a.manifest
        return f"--- # apply {m['kind']} {name_of(m)}\n{_yaml(m)}"
    if isinstance(a, WaitFor):
        return f"# wait <= {a.spec.timeout_s:.0f} s: {a.spec.describe()}"
    if isinstance(a, Check):
        return f"# check: {a.text}"
    if isinstance(a, Start):
        return f"{_command(a.argv)} &   # {a.name}, runs until {a.until}"
    if isinstance(a, DeleteByLabel):
        where = f" in {a.namespace}" if a.namespace else ""
        guard = f" named {a.name_prefix}*" if a.name_prefix else ""
        return f"# delete every {a.kind}{where}{guard} with {a.selector}"
    return f"# {a.text}"


def render(header: list[str], steps: list[Step], conditions: Mapping[str, str]) -> list[str]:
    """The plan: a header, then each section's steps, conditions spelled out."""
    lines = list(header)
    section = ""
    for s in steps:
        if s.section != section:
            section = s.section
            lines.append(f"## {section}")
        if s.unless:
            lines.append(f"# unless {conditions[s.unless]}:")
        lines.append(render_action(s.action))
    return lines
