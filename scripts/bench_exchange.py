"""Peak memory and time of `facelab import` / `facelab export` on big Parquet files (issue 14).

For each size it writes a foreign file (``path`` like ``p/000123.jpg``, two faces a photo,
``bbox_x..bbox_h``, ``det_score``, ``identity`` and a 512-d float32 ``embedding`` of random
unit vectors) in row groups, then runs the real command, each as a child process on a fresh
workspace, and reads that child's own peak RSS (``os.wait4``):

1. ``import`` of the foreign file (``--space bench/foreign``);
2. ``export`` of that workspace (a facelab export, embeddings included);
3. ``import`` of the export into another fresh workspace.

``--identity`` names the foreign file's faces (``--identity-col identity``). ``--code DIR``
runs the commands with ``DIR`` first on ``PYTHONPATH`` (a checkout of other code, e.g.
``git archive HEAD facelab | tar -x -C DIR``: the "before" numbers). The result is written
as JSON (default ``reports/bench/exchange-<label>.json``); times depend on the machine's
load, which it records::

    python scripts/bench_exchange.py --rows 100000 300000 --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
CHUNK = 50_000  # rows generated (and written as one row group) at a time


def write_foreign(path: Path, n: int, *, seed: int = 0) -> None:
    """A foreign Parquet of ``n`` faces, written chunk by chunk (never held whole)."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("path", pa.string()), ("identity", pa.string()),
                        ("bbox_x", pa.float32()), ("bbox_y", pa.float32()),
                        ("bbox_w", pa.float32()), ("bbox_h", pa.float32()),
                        ("det_score", pa.float32()), ("embedding", pa.list_(pa.float32()))])
    with pq.ParquetWriter(str(path), schema) as writer:
        for lo in range(0, n, CHUNK):
            i = np.arange(lo, min(lo + CHUNK, n))
            v = rng.standard_normal((len(i), DIM), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            offsets = pa.array(np.arange(0, (len(i) + 1) * DIM, DIM, dtype=np.int32))
            writer.write_table(pa.table({
                "path": [f"p/{k // 2:07d}.jpg" for k in i],
                "identity": [f"person_{k % 5000:04d}" for k in i],
                "bbox_x": (10 + 100 * (i % 2)).astype(np.float32),
                "bbox_y": np.full(len(i), 12, np.float32),
                "bbox_w": np.full(len(i), 80, np.float32),
                "bbox_h": np.full(len(i), 90, np.float32),
                "det_score": rng.uniform(0.6, 1.0, len(i)).astype(np.float32),
                "embedding": pa.ListArray.from_arrays(offsets, pa.array(v.ravel())),
            }, schema=schema))


def run(args: list[str], code: str | None, cwd: Path) -> dict[str, object]:
    """One `facelab ARGS` child: exit code, seconds, peak RSS (MiB) of that child alone."""
    # run from the workspace's folder (not this checkout, which ``-m`` would put first)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join(
        [code or str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "facelab.cli", *args, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    rss = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return {"rc": proc.returncode, "seconds": round(seconds, 1), "peak_rss_mib": round(rss),
            "out": (out.strip() or err.strip()).splitlines()[-1:]}


def bench(n: int, tmp: Path, code: str | None, identity: bool = False) -> dict[str, object]:
    foreign = tmp / f"foreign-{n}.parquet"
    t0 = time.perf_counter()
    write_foreign(foreign, n)
    gen = time.perf_counter() - t0
    ws1, ws2, exported = tmp / f"ws1-{n}", tmp / f"ws2-{n}", tmp / f"export-{n}.parquet"
    row: dict[str, object] = {"rows": n, "file_mib": round(foreign.stat().st_size / 2**20),
                              "generate_s": round(gen, 1)}
    row["import_foreign"] = run(["import", str(foreign), "--space", "bench/foreign",
                                 "--workspace", str(ws1),
                                 *(["--identity-col", "identity"] if identity else [])],
                                code, tmp)
    row["export"] = run(["export", str(exported), "--workspace", str(ws1)], code, tmp)
    if exported.exists():
        row["export_file_mib"] = round(exported.stat().st_size / 2**20)
        row["import_export"] = run(["import", str(exported), "--workspace", str(ws2)], code, tmp)
    for p in (foreign, exported):
        p.unlink(missing_ok=True)
    for ws in (ws1, ws2):
        subprocess.run(["rm", "-rf", str(ws)], check=False)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000])
    p.add_argument("--code", default=None, help="run the commands with this folder first on "
                   "PYTHONPATH (other code, e.g. the 'before' checkout)")
    p.add_argument("--label", default="current")
    p.add_argument("--out", default=None, help="JSON result (default reports/bench/"
                   "exchange-LABEL.json)")
    p.add_argument("--tmp", default=None, help="folder for the files and workspaces")
    p.add_argument("--identity", action="store_true", help="import the foreign file with "
                   "--identity-col identity (5,000 names, assigned by the command)")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "reports" / "bench" / f"exchange-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_exchange-") as tmp:
        rows = [bench(n, Path(tmp), args.code, args.identity) for n in args.rows]
    result = {"label": args.label, "code": args.code or str(ROOT), "dim": DIM,
              "identity_col": args.identity, "load_average": os.getloadavg(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "results": rows}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
