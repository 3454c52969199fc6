"""Published anchors carry their provenance; unverified figures say so."""

from __future__ import annotations

import re
from pathlib import Path

from analysis import published as pub

ROOT = Path(__file__).resolve().parents[2]


def test_every_anchor_has_its_provenance() -> None:
    for a in pub.ANCHORS:
        assert a.name and a.release and a.setup and a.covers and a.figures, a
        assert a.url, a
        assert a.accessed == pub.ACCESSED
        text = a.provenance()
        for part in (a.url, a.release, a.setup, a.covers, a.verified):
            assert part in text


def test_unverified_figures_are_marked() -> None:
    assert not pub.ARXIV_2411_02267.is_verified
    assert "UNVERIFIED" in pub.LATENCY_P50 and "+166 %" in pub.LATENCY_P50
    assert pub.ISTIO_122_LATENCY.is_verified and pub.LIVEWYER_2024.is_verified
    verified_cells = [pub.resources("ambient", "cpu"), pub.SCALING]
    assert not any("UNVERIFIED" in c for c in verified_cells)
    # each cell points at its note; the notes hold the provenance, once each
    assert pub.SCALING.endswith(f"[{pub.LIVEWYER_2024.note}]")
    notes = [ln for ln in pub.sources_section() if ln.startswith("- [")]
    assert [ln.split("]")[0] for ln in notes] == [f"- [{i}" for i in range(1, len(pub.ANCHORS) + 1)]
    assert "Setup: AWS EKS" in notes[pub.LIVEWYER_2024.note - 1]


def test_latency_anchor_is_not_a_cross_release_ratio() -> None:
    text = pub.LATENCY_P99
    assert "Istio 1.22" in text and "Istio 1.20" in text
    assert "not divided into 1.22's figure" in text
    assert "≈" not in text  # no ratio is formed across releases
    assert "no mesh, ambient, waypoint and sidecar charted from the same runs" in text


def test_resource_ratio_is_same_release_arithmetic() -> None:
    text = pub.resources("waypoint", "cpu")
    # (2 x 0.06 + 0.25) / (2 x 0.20)
    assert "≈ 0.92 (our arithmetic, same release)" in text
    assert "Istio 1.24" in text


def test_livewyer_setup_says_what_was_summed_and_how_load_was_made() -> None:
    a = pub.LIVEWYER_2024
    assert "6 at 1 replica, 13 at 8" in a.covers and "ALL bookinfo sidecars" in a.covers
    assert "--disable-keepalive" in a.setup and "closed loop" in a.setup
    assert "226 -> 521 MiB" in a.figures


def test_every_doc_the_code_cites_is_in_the_repository() -> None:
    """A cited docs/*.md must exist here (shared/ is not part of the project)."""
    cited = set()
    for path in [*(ROOT / "analysis").glob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        text = path.read_text()
        assert "shared/docs" not in text and "methodology.md" not in text, path
        # another repository's docs (a source's path or URL) are not ours
        cited |= {(path.name, m) for line in text.splitlines()
                  if "repo_path" not in line and "https://" not in line
                  for m in re.findall(r"(?<![\w/])docs/[\w-]+\.md", line)}
    assert cited  # the code does cite its docs
    missing = sorted((name, doc) for name, doc in cited if not (ROOT / doc).is_file())
    assert missing == []
