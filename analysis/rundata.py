"""One run directory, as `bench.store` wrote it, read into a `Run` (the run's data)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError
from bench.store import load_table, read_manifest

LOAD = "load"
# latency timed in the kernel at the load generator's sockets (issue #10): the headline
# latency when every cell of a run has it; same metric names, unit and entity as LOAD's
LOAD_KERNEL = "load_kernel"
LATENCY_SOURCES = {LOAD_KERNEL: "timed in the kernel at the load generator's sockets",
                   LOAD: "Locust's own timing (user space, from the actual send)"}
RESOURCES = "resources"
CLIENT = "client"
IDLE = "idle"
UNDER_LOAD = "load"


@dataclass(frozen=True, eq=False)
class Run:
    """One run: its manifest and its tidy long table (one row per measured value).

    `table` has the store's columns (run_id, mode, level, repetition, source, metric,
    unit, ts, value, entity, labels); `labels` is still a JSON string there, parsed on
    first use by `labels` / `label()`. Treat both as read-only.
    """

    run_dir: Path
    manifest: dict[str, Any]
    table: pd.DataFrame
    # cells whose window the machine's noise contaminated count only when asked
    include_noisy: bool = False

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.run_dir.name))

    @property
    def backend(self) -> str:
        return str(self.manifest.get("backend", ""))

    @property
    def emulated(self) -> bool:
        """The mesh was an emulation of Istio (the local backend: Envoys in network
        namespaces and the harness's own control plane), as the manifest records it
        (schema 2's "emulated"; older runs migrated by bench.store). Analysis asks this,
        never the backend's name."""
        return bool(self.manifest.get("emulated"))

    @property
    def scenario(self) -> dict[str, Any]:
        scenario = self.manifest.get("scenario")
        return scenario if isinstance(scenario, dict) else {}

    @property
    def modes(self) -> list[str]:
        """Modes in the scenario's order, then any other mode found in the table."""
        declared = [str(m) for m in self.scenario.get("modes", [])]
        seen = [m for m in dict.fromkeys(self.table["mode"]) if m]
        return declared + [m for m in seen if m not in declared]

    @property
    def levels(self) -> list[int]:
        """Target rps levels: the scenario's, then any other non-idle level in the table."""
        declared = [int(v) for v in self.scenario.get("load", {}).get("levels", [])]
        seen = sorted(int(v) for v in set(self.table["level"]) if int(v) > 0)
        return declared + [v for v in seen if v not in declared]

    @cached_property
    def labels(self) -> pd.Series:
        """The labels column parsed into dicts, aligned with `table`'s index."""
        return self.table["labels"].map(_parse_labels)

    def label(self, key: str) -> pd.Series:
        """One label per row (None where absent), aligned with `table`'s index."""
        return self.labels.map(lambda d: d.get(key))

    def with_labels(self, rows: pd.DataFrame, **defaults: Any) -> pd.DataFrame:
        """`rows` with one column per named label (the default where a row lacks it)."""
        labels = self.labels.loc[rows.index]
        return rows.assign(**{k: labels.map(lambda d, k=k, dv=dv: d.get(k, dv))
                              for k, dv in defaults.items()})

    def rows(self, source: str, metric: str | None = None,
             entity: str | None = None) -> pd.DataFrame:
        """The table's rows of one source, optionally of one metric and one entity."""
        mask = self.table["source"] == source
        if metric is not None:
            mask &= self.table["metric"] == metric
        if entity is not None:
            mask &= self.table["entity"] == entity
        return self.table[mask]

    @cached_property
    def failed_cells(self) -> frozenset[tuple[str, int, int]]:
        """(mode, level, repetition) of cells the manifest marks "failed"."""
        return frozenset(
            (str(c["mode"]), int(c["level"]), int(c["repetition"]))
            for c in self.manifest.get("cells") or [] if c.get("status") == "failed"
        )

    @cached_property
    def set_aside(self) -> dict[tuple[str, int, int], str]:
        """(mode, level, repetition) -> why, for the cells the analysis leaves out because
        the machine's noise contaminated their last attempt (bench/probes/noise.py); empty
        when the run was loaded with include_noisy."""
        if self.include_noisy:
            return {}
        return {(str(c["mode"]), int(c["level"]), int(c["repetition"])): str(c["noisy"])
                for c in self.manifest.get("cells") or []
                if c.get("noisy") and c.get("status") == "ok"}

    @cached_property
    def _final_attempt(self) -> dict[tuple[str, int, int], int]:
        """The attempt that stands for each re-run cell (the last one)."""
        return {(str(c["mode"]), int(c["level"]), int(c["repetition"])): int(c["attempt"])
                for c in self.manifest.get("cells") or [] if c.get("attempts")}

    def without_failed(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` that count: minus those of failed cells (a failed cell's partial numbers
        are not samples of the mode), of cells set aside as contaminated, and of the
        earlier attempts of a re-run cell (kept in the table, never mixed in)."""
        drop = self.failed_cells | set(self.set_aside)
        if (not drop and not self._final_attempt) or rows.empty:
            return rows
        keys = list(zip(rows["mode"], rows["level"].astype(int),
                        rows["repetition"].astype(int)))
        keep = [k not in drop for k in keys]
        if self._final_attempt:
            attempt = self.labels.loc[rows.index].map(lambda d: int(d.get("attempt", 1)))
            keep = [ok and self._final_attempt.get(k, a) == a
                    for ok, k, a in zip(keep, keys, attempt)]
        return rows[keep]

    def counted_cells(self) -> list[dict[str, Any]]:
        """The manifest's entries of the cells that count: ok, and not set aside."""
        return [c for c in self.manifest.get("cells") or [] if c.get("status") == "ok" and (
            (str(c["mode"]), int(c["level"]), int(c["repetition"])) not in self.set_aside)]

    def noise_cells(self) -> list[dict[str, Any]]:
        """Every attempt at every cell with its noise record (the manifest's), the last
        attempt marked "final"; for the report's noise section."""
        out = []
        for c in self.manifest.get("cells") or []:
            for a in [*c.get("attempts", ()), c]:
                out.append({**a, "final": a is c})
        return out

    @cached_property
    def client(self) -> pd.DataFrame:
        """The load generator's per-cell rows (source "load", entity "client") of cells
        that did not fail: achieved_rps, saturated, errors, loadgen_cpu, and Locust's own
        latency. Read headline latency from `latency`, which follows `latency_source()`."""
        return self.without_failed(self.rows(LOAD, entity=CLIENT))

    def latency_source(self) -> str:
        """The source every headline latency figure reads: "load_kernel" (timed in the
        kernel at the load generator's sockets) when every cell with a Locust latency has
        one, else "load" (Locust's own timing) for the whole run: a run never mixes the
        two."""
        return self._latency_source

    @cached_property
    def _latency_source(self) -> str:
        locust = _latency_cells(self.client)
        kernel = _latency_cells(self.without_failed(self.rows(LOAD_KERNEL, entity=CLIENT)))
        return LOAD_KERNEL if locust and locust <= kernel else LOAD

    @cached_property
    def latency(self) -> pd.DataFrame:
        """Client rows of `latency_source()` (entity "client") of cells that did not
        fail; latency_p50/p90/p99/p999/max/mean in us."""
        return self.without_failed(self.rows(self.latency_source(), entity=CLIENT))

    @cached_property
    def resources(self) -> pd.DataFrame:
        """Resource rows of cells that did not fail, with a "phase" column: "idle" or
        "load".

        A row is idle when its labels say phase "idle", or, lacking a phase label, when
        its level is 0 (the store's level for idle and run-wide values).
        """
        rows = self.without_failed(self.rows(RESOURCES)).copy()
        phase = self.label("phase").loc[rows.index]
        fallback = rows["level"].map(lambda v: IDLE if int(v) == 0 else UNDER_LOAD)
        rows["phase"] = phase.where(phase.notna(), fallback).astype(str)
        return rows


def _latency_cells(rows: pd.DataFrame) -> set[tuple[str, int, int]]:
    rows = rows[rows["metric"] == "latency_p50"]
    return set(zip(rows["mode"], rows["level"].astype(int), rows["repetition"].astype(int)))


def _parse_labels(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not text:
        return {}
    parsed = json.loads(text)
    return parsed if isinstance(parsed, dict) else {}


def load_run(run_dir: Path | str, include_noisy: bool = False) -> Run:
    """Read manifest.json and the samples table (Parquet, else the JSONL rows so far).
    Cells the machine's noise contaminated are left out of every figure unless
    `include_noisy` (they stay in the table).

    Raises UserError when `run_dir` holds no manifest.json.
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{run_dir}: no manifest.json", hint="pass a run directory under results/")
    manifest = read_manifest(run_dir)  # older formats migrated; a newer one refused
    return Run(run_dir=run_dir, manifest=manifest, table=load_table(run_dir),
               include_noisy=include_noisy)
