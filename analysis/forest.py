"""The first screen's figure: a forest plot of every primary claim (analysis.claims).

One row per primary endpoint, on a log scale of the ratio mode / sidecar: the point
estimate, its 95 % CI, the per-repetition ratios (when the modes are paired by
repetition), a line at 1, the effect floor (1 - MIN_EFFECT, which a superiority CI must
clear) and the non-inferiority margin (1 + NI_MARGIN), the ratio a published figure
implies where one does (a hollow diamond), and the verdict in its colour. A claim the run
cannot test or did not measure keeps its row, with its verdict and no point: the reader
sees every primary claim, answered or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker

from analysis.claims import ClaimRow
from analysis.claimtests import (
    EQUIVALENT,
    INCONCLUSIVE,
    NI_MARGIN,
    NOT_MEASURED,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
)
from analysis.stats import MIN_EFFECT

VERDICT_COLORS = {SUPPORTED: "#2e7d32", NOT_SUPPORTED: "#c62828", INCONCLUSIVE: "#e0a800",
                  EQUIVALENT: "#1565c0", NOT_TESTABLE: "#888888", NOT_MEASURED: "#bbbbbb"}
LABEL_CHARS = 64
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.95, 1.1, 1.5, 2, 3, 5, 10, 20, 50, 100)


def _label(row: ClaimRow) -> str:
    text = f"{row.claim.split()[0]} {row.tested}"
    if row.level is not None:
        text += f" @{row.level} rps"
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def _finite(x: float) -> bool:
    return not math.isnan(x) and not math.isinf(x) and x > 0


def claims_figure(rows: Sequence[ClaimRow], path: Path, subtitle: str = "") -> Path | None:
    """Write the forest plot of the primary rows to `path`; None (nothing written) when
    there is no primary row."""
    primary = [r for r in rows if r.primary]
    if not primary:
        return None
    values: list[float] = []
    for r in primary:
        ratio = r.result.ratio
        if ratio is None:
            continue
        values += [v for v in (ratio.ratio, ratio.lo, ratio.hi, *r.result.points) if _finite(v)]
        if r.published_ratio:
            values.append(r.published_ratio)
    lo = min([*values, 1 - MIN_EFFECT]) / 1.25
    hi = max([*values, 1 + NI_MARGIN]) * 1.25
    fig, ax = plt.subplots(figsize=(10.5, 0.36 * len(primary) + 1.45))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.axvline(1.0, color="#333333", lw=1)
    ax.axvline(1 - MIN_EFFECT, color="#666666", lw=0.8, ls="--")
    ax.axvline(1 + NI_MARGIN, color="#666666", lw=0.8, ls=":")
    shown_pub = False
    for i, r in enumerate(primary):
        y = len(primary) - 1 - i
        color = VERDICT_COLORS.get(r.verdict, "#000000")
        ratio = r.result.ratio
        note = r.verdict
        if ratio is not None and _finite(ratio.ratio):
            if ratio.has_ci:
                left = ratio.lo if _finite(ratio.lo) else lo
                right = ratio.hi if _finite(ratio.hi) else hi
                ax.plot([left, right], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            pts = [p for p in r.result.points if _finite(p)]
            ax.plot(pts, [y + 0.18] * len(pts), "o", ms=3.5, color="#555555", alpha=0.7,
                    zorder=3)
            exact = r.result.test.startswith("exact")
            ax.plot([ratio.ratio], [y], "s" if exact else "o", ms=7, color=color, zorder=4)
            note = f"{r.verdict}  {ratio.text(2)}" + (" (counts)" if exact else "")
        elif ratio is not None:
            note = f"{r.verdict}  (ratio {ratio.text(2)}: not on a log axis)"
        if r.published_ratio:
            ax.plot([r.published_ratio], [y - 0.2], "D", ms=6, mfc="none", mec="#6a1b9a",
                    zorder=4, label=None if shown_pub else "published (our arithmetic)")
            shown_pub = True
        ax.text(1.01, y, note, transform=ax.get_yaxis_transform(), va="center", fontsize=8,
                color=color)
    ax.set_yticks(range(len(primary)))
    ax.set_yticklabels([_label(r) for r in reversed(primary)], fontsize=8)
    ax.set_ylim(-0.7, len(primary) - 0.3)
    ticks = [t for t in TICKS if lo <= t <= hi]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    ax.set_xlabel("ratio mode / sidecar (log scale): point, 95 % CI, per-repetition ratios "
                  f"(grey); dashed {1 - MIN_EFFECT:g} = effect floor, dotted "
                  f"{1 + NI_MARGIN:g} = non-inferiority margin", fontsize=8)
    if shown_pub:
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    ax.set_title("Primary claims, in this run" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
