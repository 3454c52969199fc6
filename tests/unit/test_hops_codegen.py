"""The per-hop probe without root: generated C, histogram layout, percentiles, rows.

The generated C is golden-tested (tests/golden/hops_c.txt). Regenerate it after an intended
change of the program with

    MB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_hops_codegen.py
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.probes import hops
from bench.probes.hops import (
    NBUCKETS,
    OVERFLOW,
    HopHistogram,
    HopProbe,
    HopTarget,
    bucket_bounds,
    bucket_of,
    path_order,
    percentile,
    summarize,
)
from bench.store import Cell

TARGETS = [
    HopTarget.for_role(4242, "sidecar-client-0", "sidecar", "client"),
    HopTarget.for_role(31337, "sidecar-svc-0-0", "sidecar", "server"),
    HopTarget(777, "waypoint", "waypoint", (15008,), (15008,), (15008,), "waypoint"),
]


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hops_c.txt"
UPDATE = os.environ.get("MB_UPDATE_GOLDEN") == "1"


def _c() -> str:
    return HopProbe(TARGETS).generate_c(offsets=(12, 14))


def _with_headers(text: str) -> str:
    """The program as the compiler sees it: `#include "x.h"` of hops.BPF_INCLUDE spliced in."""
    def splice(m: re.Match[str]) -> str:
        return f"// ---- {m.group(1)} ----\n" + (hops.BPF_INCLUDE / m.group(1)).read_text()
    return re.sub(r'^#include "([\w.]+)"\n', splice, text, flags=re.M)


def test_generated_c_matches_golden() -> None:
    text = _with_headers(_c())
    assert "#include" not in text
    if UPDATE:
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"{GOLDEN} missing: run with MB_UPDATE_GOLDEN=1 to create it"
    assert text == GOLDEN.read_text(), f"generated C differs from {GOLDEN}; if intended, " \
        "MB_UPDATE_GOLDEN=1"


def test_generated_c_has_no_unfilled_placeholder() -> None:
    text = _c()
    assert not hops.PLACEHOLDER.search(text), hops.PLACEHOLDER.search(text)
    assert not re.search(r"\{[A-Z][A-Z_]*\}", text)  # no str.format-style leftovers either
    assert "__PIDS__" not in text and "PID_FILTER" not in text


def test_generated_c_names_every_target_pid_and_its_ports() -> None:
    text = _c()
    for t in TARGETS:
        assert re.search(rf"case {t.pid}: return \d+;", text), t
    # sidecar: downstream listeners 15001/15006, upstream remote 8080
    assert "if (lport == 15001 || lport == 15006) { *mux = (lport == 15008); return CLS_DOWN; }" \
        in text
    assert "if (rport == 8080) { *mux = (rport == 15008); return CLS_UP; }" in text
    assert "#define NT 3" in text
    assert f"#define NB {NBUCKETS}" in text
    assert "#define SKC_DPORT_OFF 12" in text and "#define SKC_NUM_OFF 14" in text


def test_template_placeholders_all_have_values() -> None:
    # every placeholder in hops.c is one generate_c knows (a typo would raise there)
    names = set(hops.PLACEHOLDER.findall(hops.C_TEMPLATE.read_text()))
    assert names, "the template has placeholders"
    _c()


def test_targets_are_validated() -> None:
    with pytest.raises(ValueError):
        HopProbe([TARGETS[0], TARGETS[0]])
    with pytest.raises(ValueError):
        HopProbe([HopTarget(0, "x", "sidecar", (15001,), (8080,))])
    with pytest.raises(ValueError):
        HopProbe([HopTarget(5, "x", "sidecar", (), (8080,))])
    with pytest.raises(ValueError):
        HopProbe([]).generate_c()


# ---- histogram layout ------------------------------------------------------------------------

def test_buckets_tile_the_range_without_gaps() -> None:
    prev_hi = 0.0
    for i in range(NBUCKETS):
        lo, hi = bucket_bounds(i)
        assert lo == prev_hi
        assert bucket_of(lo) == i
        if math.isfinite(hi):
            assert bucket_of(hi - 1e-9) == i or hi - lo == 1  # integer us: hi-1 is inside
            assert bucket_of(hi - 1) == i
        prev_hi = hi
    assert bucket_bounds(OVERFLOW)[1] == math.inf


def test_bucket_resolution_is_fine_enough_for_sub_100us_hops() -> None:
    for us in range(64):
        lo, hi = bucket_bounds(bucket_of(us))
        assert (lo, hi) == (us, us + 1)
    for us in (64, 100, 999, 5000, 123456, 1_000_000):
        lo, hi = bucket_bounds(bucket_of(us))
        assert lo <= us < hi
        assert (hi - lo) / lo <= 1 / 8 + 1e-12
    assert bucket_of(2_000_000) == OVERFLOW
    assert bucket_of(64.9) == 64 and bucket_of(63.99) == 63


def test_c_bucket_function_matches_python() -> None:
    """Compile the kernel program's bucket_of with the host compiler and compare."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    src = hops.C_TEMPLATE.read_text()
    funcs = []
    for name in ("log2_u64", "bucket_of"):
        m = re.search(rf"static __always_inline u32 {name}\(.*?\n}}\n", src, re.DOTALL)
        assert m, name
        funcs.append(m.group(0))
    prog = "\n".join([
        "#include <stdio.h>",
        "typedef unsigned int u32; typedef unsigned long long u64;",
        "#define __always_inline inline",
        f"#define NB {hops.NBUCKETS}", f"#define LINEAR_US {hops.LINEAR_US}",
        f"#define LINEAR_BITS {hops.LINEAR_BITS}", f"#define SUB_BITS {hops.SUB_BITS}",
        f"#define MAX_EXP {hops.MAX_EXP}",
        *funcs,
        ("int main(void) { u64 v; while (scanf(\"%llu\", &v) == 1) printf(\"%u\\n\", "
         "bucket_of(v)); return 0; }"),
    ])
    values = sorted({*range(300), *(int(1.1 ** k) for k in range(230)),
                     *(1 << k for k in range(40)), *((1 << k) - 1 for k in range(1, 40))})
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        c, exe = Path(d) / "b.c", Path(d) / "b"
        c.write_text(prog)
        subprocess.run([cc, "-O1", "-o", str(exe), str(c)], check=True)
        out = subprocess.run([str(exe)], input="\n".join(map(str, values)), text=True,
                             capture_output=True, check=True).stdout.split()
    assert [int(x) for x in out] == [bucket_of(v) for v in values]


# ---- percentiles and rows ----------------------------------------------------------------------

def _counts(pairs: dict[float, int]) -> tuple[int, ...]:
    counts = [0] * NBUCKETS
    for us, n in pairs.items():
        counts[bucket_of(us)] += n
    return tuple(counts)


def test_percentiles_interpolate_within_buckets() -> None:
    one = _counts({10: 100})                 # all in [10, 11)
    assert percentile(one, 0.5) == (10.5, 1.0)
    assert percentile(one, 0.99)[0] == pytest.approx(10.99)
    two = _counts({10: 50, 20: 50})          # half in [10, 11), half in [20, 21)
    assert percentile(two, 0.5)[0] == pytest.approx(11.0)
    assert percentile(two, 0.9)[0] == pytest.approx(20.8)
    wide = _counts({5000: 10})               # [4608, 5120): 512 us wide
    value, width = percentile(wide, 0.5)
    assert width == 512 and value == pytest.approx(4608 + 256)
    assert math.isnan(percentile((0,) * NBUCKETS, 0.5)[0])
    over = _counts({5_000_000: 3})
    assert percentile(over, 0.5) == (float(1 << hops.MAX_EXP), math.inf)


def test_summarize_turns_canned_buckets_into_rows() -> None:
    counts = _counts({40: 50, 60: 40, 100: 10})  # 100 lands in [96, 104)
    h = HopHistogram("sidecar-client-0", "sidecar", "client", "request", counts,
                     matched=100, unmatched=3, unclassified=2, ambiguous=1,
                     sum_ns=(40 * 50 + 60 * 40 + 100 * 10) * 1000 + 50_000)
    cell = Cell(repetition=1, mode="sidecar", level=200)
    rows = {r.metric: r for r in summarize([h], cell, ts=123.0)}
    assert set(rows) == {"hop_p50", "hop_p90", "hop_p99", "hop_mean", "hop_count",
                         "hop_unmatched", "hop_unclassified"}
    assert rows["hop_p50"].value == pytest.approx(41.0)   # rank 50: the end of [40, 41)
    assert rows["hop_p90"].value == pytest.approx(61.0)   # rank 90: the end of [60, 61)
    assert rows["hop_p99"].value == pytest.approx(96 + 9 / 10 * 8)
    assert rows["hop_mean"].value == pytest.approx(54.5)
    assert rows["hop_count"].value == 100 and rows["hop_unmatched"].value == 3
    assert rows["hop_unclassified"].value == 2
    for r in rows.values():
        assert r.source == "hops" and r.entity == "sidecar-client-0"
        assert (r.mode, r.level, r.repetition, r.ts) == ("sidecar", 200, 1, 123.0)
        assert r.labels["direction"] == "request" and r.labels["role"] == "sidecar"
        assert r.unit == ("us" if r.metric in ("hop_p50", "hop_p90", "hop_p99", "hop_mean")
                          else "count")
    assert rows["hop_p50"].labels["bucket_width_us"] == 1.0
    assert rows["hop_p99"].labels["bucket_width_us"] == 8.0
    assert "1 us below 64 us" in rows["hop_p50"].labels["buckets"]


def test_summarize_empty_histogram_gives_counts_only() -> None:
    h = HopHistogram("w", "waypoint", "waypoint", "response", (0,) * NBUCKETS, 0, 7, 0)
    rows = summarize([h], Cell(0, "waypoint", 100))
    assert {r.metric for r in rows} == {"hop_count", "hop_unmatched", "hop_unclassified"}
    assert all(math.isfinite(r.value) for r in rows)


def test_path_order_per_mode() -> None:
    assert path_order("baseline") == []
    assert path_order("sidecar") == [("sidecar", "client"), ("sidecar", "server")]
    assert path_order("ambient") == [("ztunnel", "client"), ("ztunnel", "server")]
    assert path_order("waypoint") == [("ztunnel", "client"), ("waypoint", "waypoint"),
                                      ("ztunnel", "server")]
    with pytest.raises(ValueError):
        path_order("nope")


def test_probe_status_loads_nothing_and_explains_itself() -> None:
    st = hops.probe_status()
    assert st["status"] in ("ok", "skipped")
    if st["status"] == "skipped":
        assert st["reason"] and st["hint"]


def test_btf_offsets_of_sock_common() -> None:
    if not hops.BTF_VMLINUX.exists():
        pytest.skip("no kernel BTF here")
    found = hops._btf_struct_offsets(hops.BTF_VMLINUX.read_bytes(), "sock_common",
                                     ("skc_dport", "skc_num", "skc_family"))
    # unchanged since Linux 3.x; the probe reads them from BTF anyway
    assert found == {"skc_dport": 12, "skc_num": 14, "skc_family": 16}


def test_print_bpf_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert hops.main(["--print-bpf", "--target", "99:sidecar-client-0:sidecar:client"]) == 0
    out = capsys.readouterr().out
    assert "case 99: return 0;" in out and not hops.PLACEHOLDER.search(out)


def test_another_template_can_be_filled(tmp_path: Path) -> None:
    # the overhead benchmark compares an earlier hops.c with this one
    other = tmp_path / "hops.c"
    other.write_text("#define NT __MAX_TARGETS__\nint f(u32 tgid) { switch (tgid) {\n"
                     "__TARGET_CASES__\n } return -1; }\n")
    text = HopProbe(TARGETS, template=other).generate_c(offsets=(12, 14))
    assert "#define NT 3" in text and "case 777: return 2;" in text
    assert "sock_send_length" not in text  # nothing of the default template
    assert "sock_send_length" in _c()
