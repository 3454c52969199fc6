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


# ---- the program itself, compiled for the host: what it measures on scripted events ----------
# BCC's map syntax, tracepoints and helpers replaced by plain C (a map: a table searched
# linearly; the clock: a counter that advances by a fixed pseudo-random step per read), so
# that hops.c runs on event scripts without root. tests/golden/hops_events.txt holds what
# the program put in its histograms and counters (and how often it read the clock) for fixed
# random scripts: a restructuring of hops.c must give the same; regenerate only after an
# intended change of what it measures.
HOST_PRELUDE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
#define __always_inline inline __attribute__((always_inline))
static u64 now_ = 1000000000ull, clock_reads_, pid_tgid_;
static u64 bpf_ktime_get_ns(void) {
    clock_reads_++; now_ += 1000 * (1 + (clock_reads_ * 7919) % 97); return now_; }
static u64 bpf_get_current_pid_tgid(void) { return pid_tgid_; }
#define SK_BASE 0xffff888000000000ull  /* socket i is at SK_BASE + 4096 * i */
static u8 socks_[64][4096];
static int bpf_probe_read_kernel(void *dst, u32 n, const void *src) {
    u64 a = (u64)(uintptr_t)src - SK_BASE; memcpy(dst, &socks_[a / 4096][a % 4096], n); return 0; }
struct fmap { const char *name; int ks, vs, max, arr; u8 *keys, *vals, *used; };
static struct fmap *maps_[32]; static int nmaps_;
static void fm_init(struct fmap *m) {
    if (m->vals) return;
    m->keys = calloc(m->max, m->ks); m->vals = calloc(m->max, m->vs); m->used = calloc(m->max, 1);
    if (m->arr) memset(m->used, 1, m->max);
    maps_[nmaps_++] = m; }
static void *fm_lookup(struct fmap *m, const void *k) {
    fm_init(m);
    if (m->arr) { u32 i; memcpy(&i, k, 4); return i < (u32)m->max ? m->vals + (size_t)i * m->vs : NULL; }
    for (int i = 0; i < m->max; i++)
        if (m->used[i] && !memcmp(m->keys + (size_t)i * m->ks, k, m->ks))
            return m->vals + (size_t)i * m->vs;
    return NULL; }
static int fm_update(struct fmap *m, const void *k, const void *v, int noexist) {
    void *cur = fm_lookup(m, k);
    if (cur) { if (noexist) return -17; memmove(cur, v, m->vs); return 0; }
    for (int i = 0; !m->arr && i < m->max; i++)
        if (!m->used[i]) { m->used[i] = 1; memcpy(m->keys + (size_t)i * m->ks, k, m->ks);
                           memcpy(m->vals + (size_t)i * m->vs, v, m->vs); return 0; }
    return -7; }
static int fm_delete(struct fmap *m, const void *k) {
    fm_init(m);
    for (int i = 0; !m->arr && i < m->max; i++)
        if (m->used[i] && !memcmp(m->keys + (size_t)i * m->ks, k, m->ks)) { m->used[i] = 0; return 0; }
    return -2; }
#define FAKE_MAP(name, kt, vt, size, isarr) \
    static struct fmap name##_m = {#name, sizeof(kt), sizeof(vt), (size) > 512 ? 512 : (size), isarr}; \
    static vt *name##_lookup(const void *k) { return fm_lookup(&name##_m, k); } \
    static int name##_update(const void *k, const void *v) { return fm_update(&name##_m, k, v, 0); } \
    static int name##_insert(const void *k, const void *v) { return fm_update(&name##_m, k, v, 1); } \
    static int name##_delete(const void *k) { return fm_delete(&name##_m, k); } \
    static struct { vt *(*lookup)(const void *); int (*update)(const void *, const void *); \
                    int (*insert)(const void *, const void *); int (*delete)(const void *); } \
        name = {name##_lookup, name##_update, name##_insert, name##_delete};
#define BPF_ARRAY(name, vt, n) FAKE_MAP(name, u32, vt, n, 1)
#define BPF_PERCPU_ARRAY(name, vt, n) FAKE_MAP(name, u32, vt, n, 1)
#define BPF_HASH(name, kt, vt, n) FAKE_MAP(name, kt, vt, n, 0)
struct tp_sock_sk_data_ready { u16 family, protocol; u64 skaddr; };
struct tp_sock_sock_recv_length { u16 family, protocol; int ret, flags; u64 sk; };
struct tp_sock_sock_send_length { u16 family, protocol; int ret, flags; u64 sk; };
struct tp_sock_inet_sock_set_state {
    u16 family, protocol, sport, dport; int oldstate, newstate; u64 skaddr; };
struct tp_tcp_tcp_sendmsg_locked { u64 skaddr; };
#define TRACEPOINT_PROBE(cat, ev) int tp_##cat##_##ev(struct tp_##cat##_##ev *args)
"""
# commands, one a line: K sock lport rport | D sock | R pid_tgid sock ret flags | T pid_tgid |
# S pid_tgid sock ret | X pid_tgid sock newstate | P (print); prints the non-zero elements
# of hist, counts and selfcheck, and the number of clock reads
HOST_MAIN = r"""
static u64 sk_(int i) { return SK_BASE + 4096ull * i; }
static void dump(void) {
    for (int m = 0; m < nmaps_; m++) {
        struct fmap *p = maps_[m];
        if (strcmp(p->name, "hist") && strcmp(p->name, "counts") && strcmp(p->name, "selfcheck"))
            continue;
        for (int i = 0; i < p->max; i++) {
            u64 v; memcpy(&v, p->vals + (size_t)i * p->vs, 8);
            if (v) printf("%s[%d]=%llu ", p->name, i, (unsigned long long)v);
        }
    }
    printf("clock=%llu\n", (unsigned long long)clock_reads_); }
int main(void) {
    char c; unsigned long long id; int i, a, b;
    hist.lookup(&(u32){0}); counts.lookup(&(u32){0}); selfcheck.lookup(&(u32){0});
    while (scanf(" %c", &c) == 1) {
        if (c == 'K' && scanf("%d %d %d", &i, &a, &b) == 3) {
            u16 d = __builtin_bswap16((u16)b), n = (u16)a;
            memcpy(socks_[i] + SKC_DPORT_OFF, &d, 2); memcpy(socks_[i] + SKC_NUM_OFF, &n, 2);
        } else if (c == 'D' && scanf("%d", &i) == 1) {
            struct tp_sock_sk_data_ready t = {2, 6, sk_(i)}; tp_sock_sk_data_ready(&t);
        } else if (c == 'R' && scanf("%llu %d %d %d", &id, &i, &a, &b) == 4) {
            pid_tgid_ = id;
            struct tp_sock_sock_recv_length t = {2, 6, a, b, sk_(i)}; tp_sock_sock_recv_length(&t);
        } else if (c == 'T' && scanf("%llu", &id) == 1) {
            pid_tgid_ = id;
            struct tp_tcp_tcp_sendmsg_locked t = {0}; tp_tcp_tcp_sendmsg_locked(&t);
        } else if (c == 'S' && scanf("%llu %d %d", &id, &i, &a) == 3) {
            pid_tgid_ = id;
            struct tp_sock_sock_send_length t = {2, 6, a, 0, sk_(i)}; tp_sock_sock_send_length(&t);
        } else if (c == 'X' && scanf("%llu %d %d", &id, &i, &a) == 3) {
            pid_tgid_ = id;
            u16 d, n;
            memcpy(&d, socks_[i] + SKC_DPORT_OFF, 2); memcpy(&n, socks_[i] + SKC_NUM_OFF, 2);
            struct tp_sock_inet_sock_set_state t = {2, 6, n, __builtin_bswap16(d), 0, a, sk_(i)};
            tp_sock_inet_sock_set_state(&t);
        } else if (c == 'P') {
            dump();
        } else {
            return 2;
        }
    }
    dump();
    return 0; }
"""
HOST_TARGETS = [
    HopTarget.for_role(4242, "sidecar-client-0", "sidecar", "client"),  # down 15001/15006, up 8080
    HopTarget.for_role(5151, "ztunnel-0", "ztunnel", "client"),  # down 15001/15008, up 15008/8080
    HopTarget(777, "waypoint", "waypoint", (15008,), (15008,), (15008,), "waypoint"),
]
EVENTS_GOLDEN = GOLDEN.parent / "hops_events.txt"


def _host_program(tmp: Path, template: Path | None = None) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    text = _with_headers(HopProbe(HOST_TARGETS, template=template).generate_c(offsets=(12, 14)))
    src, exe = tmp / "hops_host.c", tmp / "hops_host"
    src.write_text(HOST_PRELUDE + text + HOST_MAIN)
    subprocess.run([cc, "-O1", "-w", "-o", str(exe), str(src)], check=True)
    return exe


def _events(seed: int, n: int = 400) -> str:
    """A random but fixed script: each target has 10 downstream, 3 upstream and 1 socket of
    neither kind; mostly arrival/read/stamp/send steps from one socket to another of the same
    proxy, mixed with stray arrivals, reads (EOF, EAGAIN, MSG_PEEK), sends, closes and
    other processes touching the sockets."""
    import random

    rng = random.Random(seed)
    lines, socks = [], []
    for t in HOST_TARGETS:
        for j in range(14):
            if j < 10:
                lport, rport, kind = rng.choice(t.downstream_ports), rng.randint(30000, 60000), "down"
            elif j < 13:
                lport, rport, kind = rng.randint(30000, 60000), rng.choice(t.upstream_ports), "up"
            else:
                lport, rport, kind = rng.randint(30000, 60000), 9999, "other"
            lines.append(f"K {len(socks)} {lport} {rport}")
            socks.append((t.pid, kind))
    for _ in range(n):
        s = rng.randrange(len(socks))
        pid, kind = socks[s]
        if rng.random() < 0.05:
            pid = rng.choice([4242, 5151, 777, 1])
        tid = (pid << 32) | (pid + rng.choice((0, 1)))
        r = rng.random()
        if kind != "other" and r < 0.55:
            other = [o for o, (p, k) in enumerate(socks) if p == pid and k not in (kind, "other")]
            lines.append(f"D {s}")
            if rng.random() < 0.9:
                lines.append(f"R {tid} {s} {rng.choice([100, 200, 1])} 0")
            if other:
                if rng.random() < 0.85:
                    lines.append(f"T {tid}")
                lines.append(f"S {tid} {rng.choice(other)} {rng.choice([100, 300])}")
        elif r < 0.65:
            lines.append(f"D {s}")
        elif r < 0.75:
            lines.append(f"R {tid} {s} {rng.choice([0, -11, 50, 50])} {rng.choice([0, 0, 0, 2])}")
        elif r < 0.85:
            if rng.random() < 0.5:
                lines.append(f"T {tid}")
            lines.append(f"S {tid} {s} {rng.choice([-1, 0, 80, 80, 80])}")
        elif r < 0.93:
            lines.append(f"T {tid}")
        else:
            lines.append(f"X {tid} {s} {rng.choice([1, 1, 7, 7, 2])}")
    return "\n".join(lines) + "\n"


def _run(exe: Path, script: str) -> str:
    return subprocess.run([str(exe)], input=script, text=True, capture_output=True,
                          check=True).stdout


def test_host_compiled_program_times_one_request_through_a_sidecar(tmp_path: Path) -> None:
    """Socket 0: downstream (local 15001), socket 1: upstream (remote 8080) of pid 4242."""
    exe = _host_program(tmp_path)
    tid = (4242 << 32) | 4243
    out = _run(exe, "\n".join([
        "K 0 15001 40000", "K 1 40001 8080",
        "D 0", f"R {tid} 0 100 0", f"T {tid}", f"S {tid} 1 100",    # request in, out
        "D 1", f"R {tid} 1 100 0", f"T {tid}", f"S {tid} 0 100"]))  # response in, out
    # clock reads: arrival 0, request send, arrival 1, response send; read k advances the
    # clock by 1 + (k * 7919) % 97 us: 63, 28, 90, 55. Request hop 28 us, response hop 55 us
    got = dict(kv.split("=") for kv in out.split())
    assert got.pop("clock") == "4"
    nc, nb = len(hops.COUNTERS), NBUCKETS
    c = hops.COUNTERS.index
    assert got == {f"counts[{c('matched')}]": "1", f"counts[{nc + c('matched')}]": "1",
                   f"counts[{c('sum_ns')}]": "28000", f"counts[{nc + c('sum_ns')}]": "55000",
                   f"hist[{bucket_of(28)}]": "1", f"hist[{nb + bucket_of(55)}]": "1"}


def test_host_compiled_program_measures_what_the_golden_says(tmp_path: Path) -> None:
    exe = _host_program(tmp_path)
    text = "".join(f"seed {seed}: {_run(exe, _events(seed))}" for seed in range(40))
    if UPDATE:
        EVENTS_GOLDEN.write_text(text)
    assert EVENTS_GOLDEN.exists(), f"{EVENTS_GOLDEN} missing: MB_UPDATE_GOLDEN=1 creates it"
    assert text == EVENTS_GOLDEN.read_text(), f"what hops.c measures differs from {EVENTS_GOLDEN}"
    # the scripts reach every outcome the counters tell apart
    totals = dict.fromkeys(hops.COUNTERS, 0)
    for m in re.finditer(r"counts\[(\d+)\]=(\d+)", text):
        totals[hops.COUNTERS[int(m.group(1)) % len(hops.COUNTERS)]] += int(m.group(2))
    assert all(totals.values()), totals
