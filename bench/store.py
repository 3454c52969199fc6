"""Run directory: manifest, raw samples appended as JSONL while running, Parquet at the end.

Layout of results/<run_id>/:
  manifest.json     schema version, scenario + hash, versions, host, cells, probe status
  samples.jsonl     one tidy row per line, appended and flushed as measured (survives a crash)
  hdr/<cell>.jsonl  per-second HDR latency histograms from the load generator
  samples.parquet   the same rows as samples.jsonl, written by finalize()
The analysis reads only these files, so any run can be re-analysed later.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import StorageError, UserError
from bench.paths import results_root

# The manifest's format. A run written by an older meshbench is read through MIGRATIONS,
# never refused (asv's Results with api_version and update_to_N is the model); a newer one
# is refused in one line.
SCHEMA_VERSION = 2
COLUMNS = (
    "run_id", "mode", "level", "repetition", "source", "metric", "unit",
    "ts", "value", "entity", "labels",
)
DEFAULT_ROOT = results_root()


@dataclass(frozen=True, order=True)
class Cell:
    """One (mode, load level, repetition) measurement."""

    repetition: int
    mode: str
    level: int

    @property
    def id(self) -> str:
        return f"r{self.repetition}-{self.mode}-{self.level}rps"


@dataclass(frozen=True)
class Sample:
    """One tidy row. `level` is the target rps; 0 for idle or run-wide values."""

    source: str
    metric: str
    unit: str
    value: float
    entity: str = ""
    mode: str = ""
    level: int = 0
    repetition: int = 0
    ts: float = 0.0
    labels: dict[str, Any] | None = None

    @classmethod
    def for_cell(cls, cell: Cell, **kw: Any) -> Sample:
        return cls(mode=cell.mode, level=cell.level, repetition=cell.repetition, **kw)


def new_run_id(scenario_name: str) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{scenario_name}-{os.getpid()}"


_os_write = os.write  # the one call that writes rows (a fault test injects ENOSPC here)


def _atomic_write(path: Path, text: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    except OSError as e:
        raise _storage_error(path, e) from e
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)  # the previous manifest stays whole
        raise _storage_error(path, e) from e


def _storage_error(path: Path, e: OSError) -> StorageError:
    what = "the results disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (
        f"{e.strerror or e}")
    return StorageError(f"cannot write {path}: {what}",
                        hint="free space (or pick another --results); what was written "
                             "before is kept")


def _update_to_2(manifest: dict[str, Any]) -> dict[str, Any]:
    """v2 records whether the mesh was an emulation of Istio ("emulated": the local
    backend's Envoys and control plane), which v1 left to be inferred from the backend's
    name or its simplifications (a v1 run recorded those only when emulated)."""
    return {**manifest, "schema_version": 2,
            "emulated": bool(manifest.get("simplifications"))}


MIGRATIONS = {2: _update_to_2}  # version -> the step from the one before it


def migrate(manifest: dict[str, Any], where: Path | str = "") -> dict[str, Any]:
    """`manifest` brought up to SCHEMA_VERSION (a manifest without a version is 1).
    Raises UserError for a version newer than this meshbench reads."""
    version = manifest.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise UserError(f"{where}: manifest schema_version {version!r} is not one this "
                        f"meshbench reads ({SCHEMA_VERSION})",
                        hint="read it with the meshbench that wrote it, or upgrade")
    while version < SCHEMA_VERSION:
        version += 1
        manifest = MIGRATIONS[version](manifest)
    return manifest


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run directory's manifest.json, migrated to SCHEMA_VERSION: every reader of a run
    goes through here."""
    return migrate(json.loads((run_dir / "manifest.json").read_text()), run_dir)


class RunStore:
    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        self.dir = run_dir
        self.manifest = manifest
        self.run_id: str = manifest["run_id"]
        # unbuffered: a failed write leaves nothing pending, and is cut back (see _write)
        self._samples = None if manifest.get("finalized") else open(
            run_dir / "samples.jsonl", "ab", buffering=0
        )

    @classmethod
    def create(cls, root: Path, run_id: str, manifest: dict[str, Any]) -> RunStore:
        run_dir = root / run_id
        (run_dir / "hdr").mkdir(parents=True, exist_ok=False)
        manifest = {"schema_version": SCHEMA_VERSION, "run_id": run_id, **manifest}
        store = cls(run_dir, manifest)
        store.save_manifest()
        return store

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        manifest = read_manifest(run_dir)
        store = cls.__new__(cls)
        store.dir, store.manifest, store.run_id = run_dir, manifest, manifest["run_id"]
        store._samples = None
        return store

    @classmethod
    def reopen(cls, run_dir: Path) -> RunStore:
        """A finished or interrupted run, opened to append more rows (its Parquet is written
        again by finalize)."""
        store = cls.open(run_dir)
        store.manifest["finalized"] = False
        store._samples = open(run_dir / "samples.jsonl", "ab", buffering=0)
        store.save_manifest()
        return store

    def save_manifest(self) -> None:
        _atomic_write(self.dir / "manifest.json", json.dumps(self.manifest, indent=2, default=str))

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.save_manifest()

    def append(self, samples: Iterable[Sample]) -> int:
        """Append rows and flush them to disk now, so that a crash keeps them."""
        if self._samples is None:
            raise RuntimeError("run is finalized or opened read-only")
        lines = []
        for s in samples:
            if not math.isfinite(s.value):
                raise ValueError(f"non-finite value for {s.source}/{s.metric}: {s.value}")
            row = {
                "run_id": self.run_id, "mode": s.mode, "level": s.level,
                "repetition": s.repetition, "source": s.source, "metric": s.metric,
                "unit": s.unit, "ts": s.ts or time.time(), "value": float(s.value),
                "entity": s.entity, "labels": s.labels or {},
            }
            lines.append(json.dumps(row, separators=(",", ":")) + "\n")
        try:
            self._write("".join(lines))
        except OSError as e:
            raise _storage_error(self.dir / "samples.jsonl", e) from e
        return len(lines)

    def _write(self, text: str) -> None:
        """The one place rows reach the disk. All or nothing: when a write fails (ENOSPC),
        the file is cut back to its whole lines, so the JSONL stays readable."""
        assert self._samples is not None
        fd = self._samples.fileno()
        data = text.encode()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += _os_write(fd, data[done:])
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError as e2:  # the rows before are whole; the reader skips a cut line
                print(f"meshbench: cannot cut back {self.dir / 'samples.jsonl'}: {e2}",
                      file=sys.stderr)
            raise

    def hdr_path(self, cell: Cell, attempt: int = 1) -> Path:
        """The prefix of a cell's HDR files (a re-run attempt has its own)."""
        return self.dir / "hdr" / (f"{cell.id}.jsonl" if attempt == 1 else
                                   f"{cell.id}-a{attempt}.jsonl")

    def finalize(self) -> Path:
        """Write the tidy Parquet table from the JSONL rows."""
        if self._samples is not None:
            self._samples.close()
            self._samples = None
        table = read_jsonl_table(self.dir)
        out = self.dir / "samples.parquet"
        tmp = out.with_name(".tmp-samples.parquet")
        try:
            table.to_parquet(tmp, index=False)
            os.replace(tmp, out)
        except OSError as e:  # no half-written Parquet: the JSONL stays the record
            tmp.unlink(missing_ok=True)
            raise _storage_error(out, e) from e
        self.update(finalized=True)
        return out


def read_jsonl_table(run_dir: Path):  # -> pandas.DataFrame
    import pandas as pd

    rows = []
    path = run_dir / "samples.jsonl"
    if path.exists():
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    # a crash can cut the last line short; everything before it is whole
                    continue
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["labels"] = df["labels"].map(lambda d: json.dumps(d or {}, sort_keys=True))
    df = df.astype({"level": "int64", "repetition": "int64", "ts": "float64", "value": "float64"})
    return df


def load_table(run_dir: Path):  # -> pandas.DataFrame
    """The run's tidy table: Parquet if the run finished, else the JSONL rows so far."""
    import pandas as pd

    pq = run_dir / "samples.parquet"
    if pq.exists():
        return pd.read_parquet(pq)
    return read_jsonl_table(run_dir)


def latest_run(root: Path = DEFAULT_ROOT) -> Path | None:
    runs = sorted(
        (p for p in root.glob("*/manifest.json")), key=lambda p: p.stat().st_mtime
    )
    return runs[-1].parent if runs else None
