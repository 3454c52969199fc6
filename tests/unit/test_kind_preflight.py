"""Preflight of the kind backend: one line naming the first missing prerequisite and its fix.

All but the first test use a command recorder; the first one runs the real preflight on
this machine (it only reads: `docker info`, `kind version`, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import scenario as scen
from bench.backends.kind.backend import KindBackend
from bench.errors import PrerequisiteError
from tests.support.k8s_fake import CommandRecorder, FakeClock, FakeKube

SCENARIO = scen.from_dict({"name": "t", "backend": "kind"})
NO_DAEMON = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
             "Is the docker daemon running?")


def test_preflight_on_this_machine_gives_one_line() -> None:
    b = KindBackend(SCENARIO, run_id="x", cluster="mb-kind")
    try:
        b.preflight()
    except PrerequisiteError as e:
        line = e.one_line()
    else:
        pytest.skip("this machine has a Docker daemon, kind, kubectl and istioctl as pinned")
    assert "\n" not in line and "hint:" in line
    if not Path("/var/run/docker.sock").exists() and not os.environ.get("DOCKER_HOST"):
        assert line.startswith("docker is "), line  # no daemon here: docker is what fails


def healthy() -> CommandRecorder:
    rec = CommandRecorder()
    rec.on("docker", "info", stdout="28.2.2\n")
    rec.on("kind", "version", stdout="kind v0.29.0 go1.24.2 linux/amd64\n")
    rec.on("kubectl", "version", stdout='{"clientVersion": {"gitVersion": "v1.32.4-dispatcher"}}')
    rec.on("istioctl", "version", stdout="client version: 1.27.3\n")
    return rec


def preflight(rec: CommandRecorder) -> str:
    b = KindBackend(SCENARIO, run_id="x", commands=rec, kube_factory=lambda c: FakeKube(),
                    clock=FakeClock(), cluster="mb-kind")
    with pytest.raises(PrerequisiteError) as e:
        b.preflight()
    assert "\n" not in e.value.one_line()
    assert e.value.exit_code == 2
    return e.value.one_line()


def test_all_present_passes_and_only_reads() -> None:
    rec = healthy()
    KindBackend(SCENARIO, run_id="x", commands=rec, cluster="mb-kind").preflight()
    assert [c[:2] for c in rec.calls] == [("docker", "info"), ("kind", "version"),
                                          ("kubectl", "version"), ("istioctl", "version")]


def test_docker_missing() -> None:
    rec = healthy()
    del rec.tools["docker"]
    line = preflight(rec)
    assert line.startswith("docker is not installed") and "docs.docker.com" in line


def test_docker_daemon_not_answering() -> None:
    rec = healthy()
    rec.on("docker", "info", returncode=1, stderr=f"{NO_DAEMON}\n")
    line = preflight(rec)
    assert line.startswith("docker is installed but its daemon does not answer")
    assert NO_DAEMON in line and "systemctl start docker" in line


def test_kind_missing_and_wrong_version() -> None:
    rec = healthy()
    del rec.tools["kind"]
    assert preflight(rec).startswith("kind is not installed (hint: go install sigs.k8s.io/kind@v0.29.0")
    rec = healthy()
    rec.on("kind", "version", stdout="kind v0.27.0 go1.23 linux/amd64\n")
    assert preflight(rec).startswith("kind 0.27.0 found; meshbench pins 0.29.0")


def test_kubectl_more_than_one_minor_away() -> None:
    rec = healthy()
    rec.on("kubectl", "version", stdout='{"clientVersion": {"gitVersion": "v1.30.2"}}')
    assert "more than one minor version" in preflight(rec)


def test_istioctl_wrong_version_names_the_download() -> None:
    rec = healthy()
    rec.on("istioctl", "version", stdout="client version: 1.26.1\n")
    line = preflight(rec)
    assert line.startswith("istioctl 1.26.1 found; meshbench pins 1.27.3")
    assert "ISTIO_VERSION=1.27.3" in line and "MB_ISTIOCTL" in line


def test_mb_istioctl_points_at_another_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_ISTIOCTL", "/opt/istio-1.27.3/bin/istioctl")
    rec = healthy()
    rec.tools["/opt/istio-1.27.3/bin/istioctl"] = "/opt/istio-1.27.3/bin/istioctl"
    rec.on("/opt/istio-1.27.3/bin/istioctl", "version", stdout="1.27.3\n")
    b = KindBackend(SCENARIO, run_id="x", commands=rec, cluster="mb-kind")
    b.preflight()
    plan = b.plan("ambient")
    assert any(line.startswith("$ /opt/istio-1.27.3/bin/istioctl install") for line in plan)
    assert "  profile: ambient" in "\n".join(plan)
