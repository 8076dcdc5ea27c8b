"""A consistent copy of a workspace's catalog, for work that must not touch the original.

The labeling simulator (:mod:`facelab.research.simulate`) clicks through facelab on a copy,
so the user's catalog is never changed by an experiment.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from facelab.errors import FacelabError
from facelab.store.catalog import DB_NAME, Catalog

__all__ = ["copy_workspace"]


def copy_workspace(catalog: Catalog, dest: str | os.PathLike[str]) -> Catalog:
    """A copy of ``catalog`` (its DuckDB file and vector indexes) in folder ``dest``.

    The source is checkpointed first (its write-ahead log folded into the file) while this
    process holds it, so the copy is one consistent state; indexes are caches and are
    copied only to save their rebuild.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / DB_NAME).exists():
        raise FacelabError(f"{dest} already holds a catalog; copy into an empty folder")
    with catalog.session() as con:
        con.execute("CHECKPOINT")
        shutil.copy2(catalog.path, dest / DB_NAME)
        wal = catalog.path.with_name(DB_NAME + ".wal")
        if wal.exists():
            shutil.copy2(wal, dest / wal.name)
    index = catalog.workspace / "index"
    if index.is_dir():
        shutil.copytree(index, dest / "index")
    return Catalog(dest, lock_timeout=catalog.lock_timeout)
