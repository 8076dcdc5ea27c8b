"""Detection results as Parquet shards, and absorbing a shard into the catalog.

A distributed run (:mod:`facelab.library.ray_engine`) detects photos on worker processes;
each batch of results comes back to the driver, which writes it as one shard under the
workspace (``runs/<run_id>/shards/NNNNNN.parquet``, atomically: a temporary file renamed
into place) and then *absorbs* it: the shard's rows become exactly the batch
:func:`facelab.library.detect.commit_batch` writes in a local run (same transaction, same
faces, same per-photo error records), and the shard is deleted. A driver killed between
writing and absorbing leaves the shard behind; the next run of the workspace absorbs every
leftover shard first (oldest run, lowest number first). Absorbing is idempotent: a photo
that already has its detection record is skipped, so a shard absorbed twice adds nothing.

One row per photo: ``asset_id``, ``path``, ``error_kind`` / ``error_detail`` (null for a
photo that was detected) and one list column per face field, in the face order of the
batch: ``boxes`` (x, y, w, h per face, float64), ``det_scores`` and ``qualities`` (float64),
``landmarks`` (a list of float32 per face, null when the model gives none) and
``embeddings`` (``dim`` float32 per face). Every value is the one the local run commits, bit
for bit. The schema metadata records the model's ``space``, ``version`` and ``dim``; a shard
of another space or version is not absorbed (its photos are still pending and are detected
again).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facelab.library.detect import DetectReport, FaceRow, PhotoResult, commit_batch
from facelab.library.models.base import FaceModel
from facelab.store.catalog import Catalog
from facelab.store.runs import pid_alive

#: The shard columns (see the module docstring).
SCHEMA = pa.schema([
    ("asset_id", pa.int64()),
    ("path", pa.string()),
    ("error_kind", pa.string()),
    ("error_detail", pa.string()),
    ("boxes", pa.list_(pa.float64())),
    ("det_scores", pa.list_(pa.float64())),
    ("qualities", pa.list_(pa.float64())),
    ("landmarks", pa.list_(pa.list_(pa.float32()))),
    ("embeddings", pa.list_(pa.float32())),
])

SHARD_NAME = re.compile(r"^(\d{6,})\.parquet$")
#: The file in a run's shard folder naming the driver (``host pid``) that writes there.
DRIVER_FILE = "driver"


def results_table(results: list[PhotoResult]) -> pa.Table:
    """A batch of :func:`facelab.library.detect.detect_batch` results as shard rows."""
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for asset_id, path, rows, kind, detail in results:
        cols["asset_id"].append(int(asset_id))
        cols["path"].append(str(path))
        cols["error_kind"].append(kind)
        cols["error_detail"].append(detail)
        rows = rows or []
        cols["boxes"].append([v for r in rows for v in (r.x, r.y, r.w, r.h)])
        cols["det_scores"].append([r.det_score for r in rows])
        cols["qualities"].append([r.quality for r in rows])
        cols["landmarks"].append([None if r.landmarks is None
                                  else np.asarray(r.landmarks, np.float32).ravel().tolist()
                                  for r in rows])
        cols["embeddings"].append(np.concatenate([np.asarray(r.embedding, np.float32)
                                                  for r in rows]).tolist() if rows else [])
    return pa.table(cols, schema=SCHEMA)


def table_results(table: pa.Table, dim: int) -> list[PhotoResult]:
    """Shard rows back to the results :func:`facelab.library.detect.commit_batch` takes."""
    out: list[PhotoResult] = []
    for rec in table.select(SCHEMA.names).to_pylist():
        if rec["error_kind"] is not None:
            out.append((rec["asset_id"], rec["path"], None, rec["error_kind"],
                        rec["error_detail"]))
            continue
        boxes = np.asarray(rec["boxes"], np.float64).reshape(-1, 4)
        vecs = np.asarray(rec["embeddings"], np.float32).reshape(len(boxes), dim)
        faces = [FaceRow(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s), float(q),
                         vecs[i].copy(),
                         None if lm is None else np.asarray(lm, np.float32).reshape(-1, 2))
                 for i, (b, s, q, lm) in enumerate(zip(boxes, rec["det_scores"],
                                                       rec["qualities"], rec["landmarks"],
                                                       strict=True))]
        out.append((rec["asset_id"], rec["path"], faces, None, None))
    return out


@dataclass(frozen=True)
class ShardMeta:
    """What model made a shard's rows."""

    space: str
    version: str
    dim: int

    @classmethod
    def of(cls, model: FaceModel) -> ShardMeta:
        return cls(model.space, model.version, int(model.dim))


def write_shard(table: pa.Table, path: Path, meta: ShardMeta) -> Path:
    """Write ``table`` to ``path`` atomically (a temporary file, flushed, renamed into place):
    a reader sees the whole shard or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata({"facelab.space": meta.space,
                                           "facelab.version": meta.version,
                                           "facelab.dim": str(meta.dim)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as stream:
        pq.write_table(table, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    return path


def read_shard(path: Path) -> tuple[ShardMeta | None, pa.Table]:
    """A shard's rows and the model that made them (None: not a facelab shard)."""
    table = pq.read_table(path)
    md = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if not {"facelab.space", "facelab.version", "facelab.dim"} <= md.keys():
        return None, table
    return ShardMeta(md["facelab.space"], md["facelab.version"], int(md["facelab.dim"])), table


def shard_dir(catalog: Catalog, run_id: int) -> Path:
    """Where run ``run_id`` writes its shards."""
    return Path(catalog.workspace) / "runs" / str(run_id) / "shards"


def claim_shard_dir(catalog: Catalog, run_id: int) -> Path:
    """Create run ``run_id``'s shard folder and record this process as its driver."""
    d = shard_dir(catalog, run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / DRIVER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return d


def shard_path(folder: Path, number: int) -> Path:
    return folder / f"{number:06d}.parquet"


def _driver_alive(folder: Path) -> bool:
    """Whether the process that writes into ``folder`` still runs (on this host)."""
    try:
        host, pid = (folder / DRIVER_FILE).read_text().split()
    except (OSError, ValueError):
        return False
    return host == socket.gethostname() and pid_alive(int(pid)) and int(pid) != os.getpid()


def leftover_shards(catalog: Catalog) -> list[Path]:
    """Shards written but not absorbed by drivers that are gone, oldest run first, in the
    order they were written."""
    root = Path(catalog.workspace) / "runs"
    if not root.is_dir():
        return []
    out: list[Path] = []
    runs = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for run in runs:
        folder = run / "shards"
        if not folder.is_dir() or _driver_alive(folder):
            continue
        found = [(int(m.group(1)), p) for p in folder.iterdir()
                 if (m := SHARD_NAME.match(p.name))]
        out.extend(p for _, p in sorted(found))
    return out


def absorb_shard(catalog: Catalog, model: FaceModel, path: Path, run_id: int | None,
                 report: DetectReport, redetect_iou: float | None = None) -> bool:
    """Commit a shard's photos as a local run commits a batch, then delete the shard; return
    True when the run was asked to stop. A shard of another space or model version is
    deleted unabsorbed (its photos are still pending). Idempotent (see module docstring)."""
    meta, table = read_shard(path)
    stop = False
    if meta == ShardMeta.of(model):
        stop = commit_batch(catalog, model, table_results(table, meta.dim), run_id, report,
                            redetect_iou)
    path.unlink(missing_ok=True)
    return stop


def remove_empty_shard_dirs(catalog: Catalog) -> None:
    """Delete the shard folders (and their run folders) that hold no shard any more."""
    root = Path(catalog.workspace) / "runs"
    if not root.is_dir():
        return
    for run in root.iterdir():
        folder = run / "shards"
        if not folder.is_dir() or _driver_alive(folder):
            continue
        if any(SHARD_NAME.match(p.name) for p in folder.iterdir()):
            continue
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
            run.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty
