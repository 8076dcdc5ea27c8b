"""Two-fold person split of lfw-dev: does `best`'s choice of factors hold on each half?

The factors of simulate.BEST were chosen on all of lfw-dev. Here the identities are split in
two halves (seed 0); each half is imported into its own workspace under --out, and plain,
best and best with its first round shifted are simulated on it. docs/simulator.md records
the numbers. Usage: python scripts/simulate_halves.py [--out /tmp/halves]  (~4 min)
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facelab.research import simulate
from facelab.research.lfw import default_dir
from facelab.store import exchange
from facelab.store.catalog import Catalog

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="/tmp/halves", help="folder for the halves' workspaces")
args = parser.parse_args()
out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
lfw = default_dir()
if lfw is None:
    raise SystemExit("lfw-dev not found (../shared/data/lfw-dev)")
t = pq.read_table(lfw / "embeddings-dlib.parquet")
ids = np.array(sorted(set(t.column("identity").to_pylist())))
rng = np.random.default_rng(0)
half = set(rng.permutation(ids)[: len(ids) // 2].tolist())
mask = np.array([i in half for i in t.column("identity").to_pylist()])
variants = {
    "plain": ("plain", {}),
    "best (1.15, 1.3, 1.45, 1.6)": ("best", {}),
    "best from 1.1": ("best", {"rounds": (1.1, 1.25, 1.4, 1.55)}),
    "best from 1.2": ("best", {"rounds": (1.2, 1.35, 1.5, 1.65)}),
    "best from 1.0": ("best", {"rounds": (1.0, 1.15, 1.3, 1.45, 1.6)}),
}
out = []
for name, m in (("A", mask), ("B", ~mask)):
    path = str(out_dir / f"half{name}.parquet")
    pq.write_table(t.filter(pa.array(m)), path)
    ws = out_dir / f"ws{name}"
    shutil.rmtree(ws, ignore_errors=True)
    cat = Catalog(ws)
    exchange.import_faces(cat, path, space="dlib")
    for label, (strategy, opts) in variants.items():
        t0 = time.time()
        r = simulate.simulate(cat, path, strategy=strategy, options=opts or None, progress=False)
        row = {"half": name, "variant": label, "clicks": r.actions, "floor": r.floor,
               "ratio": round(r.actions / r.floor, 3), "accuracy": round(r.accuracy, 4),
               "precision": round(r.precision, 4), "reached": r.reached,
               "seconds": round(time.time() - t0, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
(out_dir / "result.json").write_text(json.dumps(out, indent=1))
