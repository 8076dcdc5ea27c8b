"""Scan photo folders into the catalog: one asset per distinct content, one row per file path.

A re-scan is idempotent and cheap: files whose size and modification time are unchanged are
not read again. Content is identified by a BLAKE2b hash, so identical copies are one asset
(detected once) and a moved or renamed file keeps its asset, faces and labels. A file that
disappears leaves its asset 'missing' rather than deleting anything a person decided about
it; if the content comes back anywhere, the asset is 'present' again.
"""

from __future__ import annotations

import errno
import fnmatch
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from facelab.errors import ImageError
from facelab.library.images import probe_image
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.hashing import file_hash
from facelab.store.library import (
    asset_ids_by_hash,
    insert_assets,
    known_files,
    mark_missing_if_orphaned,
    remove_files,
    revive_assets,
    upsert_files,
)


@dataclass
class ScanReport:
    """What a scan found, by category, plus errors by kind."""

    root: str
    seen: int = 0
    added: int = 0          # new content
    duplicates: int = 0     # new paths whose content was already known
    changed: int = 0        # known paths whose content changed
    moved: int = 0          # content that left one path and appeared at another
    unchanged: int = 0
    removed: int = 0        # paths gone since the last scan
    errors: Counter = field(default_factory=Counter)
    _new_paths_of: Counter = field(default_factory=Counter, repr=False)  # known asset -> n
    error_files: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("root", "seen", "added", "duplicates", "changed",
                                            "moved", "unchanged", "removed")}
        d["errors"] = dict(self.errors)
        return d


def iter_image_files(root: Path, *, extensions: frozenset[str],
                     include: Sequence[str] = (), exclude: Sequence[str] = ()
                     ) -> Iterator[tuple[Path, OSError | None]]:
    """Yield ``(path, None)`` for each candidate image, ``(path, error)`` for unreachable ones.

    Follows directory symlinks but visits each real directory once, so a symlink loop
    cannot recurse forever. ``include``/``exclude`` are glob patterns matched against the
    path relative to ``root`` (e.g. ``2023/*``, ``*/thumbnails/*``).
    """
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError as exc:
            yield d, exc
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            yield d, exc
            continue
        subdirs = []
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if exclude and any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel + "/", p)
                               for p in exclude):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError as exc:
                is_dir = False
                if path.suffix.lower() in extensions:
                    yield path, exc
                    continue
            if is_dir:
                subdirs.append(path)
                continue
            if path.suffix.lower() not in extensions:
                continue
            if include and not any(fnmatch.fnmatch(rel, p) for p in include):
                continue
            yield path, None
        stack.extend(reversed(subdirs))


def _error_kind(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission"
    if exc.errno == errno.ENOENT:
        return "missing"
    return "io"


def scan(catalog: Catalog, root: str | os.PathLike[str], *, settings: Settings | None = None,
         include: Sequence[str] = (), exclude: Sequence[str] = (),
         progress: bool = True) -> ScanReport:
    """Register every image below ``root``; return what changed since the last scan.

    Writes in batches of ``settings.batch_size * 8`` files so another process can use the
    catalog between them, and a killed scan keeps what it finished.
    """
    settings = settings or Settings.from_env()
    root_path = Path(os.path.realpath(os.path.expanduser(root)))  # one spelling per folder
    if not root_path.is_dir():
        raise FileNotFoundError(f"photo folder {root_path} does not exist or is not a folder")
    root_key = str(root_path)
    report = ScanReport(root_key)
    known = known_files(catalog, root_key)
    with catalog.read() as con:
        hashes = asset_ids_by_hash(con)
    seen_paths: set[str] = set()
    pending: list[dict] = []
    flush_every = settings.batch_size * 8

    bar = tqdm(desc="scan", unit="file", disable=not progress, dynamic_ncols=True)
    for path, err in iter_image_files(root_path, extensions=settings.extensions,
                                      include=include, exclude=exclude):
        key = str(path)
        seen_paths.add(key)
        report.seen += 1
        bar.update()
        row = _scan_one(path, err, known.get(key), settings)
        if row is None:
            report.unchanged += 1
            continue
        if row.get("error_kind"):
            report.errors[row["error_kind"]] += 1
            report.error_files.append((key, row["error_kind"], row.get("error_detail") or ""))
        row["path"] = key
        pending.append(row)
        if len(pending) >= flush_every:
            _write_batch(catalog, root_key, pending, known, hashes, report)
            pending = []
    bar.close()
    if pending:
        _write_batch(catalog, root_key, pending, known, hashes, report)
    gone = [p for p in known if p not in seen_paths]
    if gone:
        _remove_paths(catalog, gone)
        report.removed = len(gone)
        # content that vanished from one path and appeared at a new one moved
        gone_assets = Counter(known[p][0] for p in gone if known[p][0] is not None)
        for asset_id, n_gone in gone_assets.items():
            moved = min(n_gone, report._new_paths_of.get(asset_id, 0))
            report.moved += moved
            report.duplicates -= moved
            report.removed -= moved
    return report


def _scan_one(path: Path, err: OSError | None, known: tuple | None, settings: Settings
              ) -> dict | None:
    """The row to write for one file, or None when it is unchanged since the last scan."""
    if err is None:
        try:
            st = path.stat()
        except OSError as exc:
            err = exc
    if err is not None:
        return {"error_kind": _error_kind(err), "error_detail": err.strerror or str(err)}
    if known is not None and known[0] is not None and known[1] == st.st_size \
            and known[2] == st.st_mtime_ns:
        return None
    row: dict = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size == 0:
        row.update(error_kind="empty", error_detail="zero-byte file")
        return row
    try:
        row["hash"] = file_hash(path)
    except OSError as exc:
        row.update(error_kind=_error_kind(exc), error_detail=exc.strerror or str(exc))
        return row
    try:
        info = probe_image(path, max_pixels=settings.max_image_pixels)
        row.update(width=info.width, height=info.height, orientation=info.orientation,
                   taken_at=info.taken_at, format=info.format)
    except ImageError as exc:
        # still registered (it is content in the library); detection reports it per asset
        row.update(probe_kind=exc.kind, probe_detail=exc.detail)
    return row


def _write_batch(catalog: Catalog, root: str, rows: list[dict], known: dict,
                 hashes: dict[str, int], report: ScanReport) -> None:
    """Write one batch of scanned files in a single transaction, with bulk statements."""
    new_assets: dict[str, dict] = {}
    for row in rows:
        h = row.get("hash")
        if h is not None and h not in hashes and h not in new_assets:
            new_assets[h] = row
    with catalog.write() as con:
        hashes.update(insert_assets(con, new_assets))
        revived: set[int] = set()
        orphaned: set[int] = set()
        for row in rows:
            path = row["path"]
            h = row.get("hash")
            asset_id = row["asset_id"] = hashes[h] if h is not None else None
            old = known.get(path)
            old_asset = old[0] if old is not None else None
            if asset_id is None:
                pass
            elif h in new_assets and new_assets[h] is row:
                report.changed += old is not None
                report.added += old is None
            else:
                revived.add(asset_id)
                if old is None:
                    report.duplicates += 1
                    report._new_paths_of[asset_id] += 1
                elif old_asset != asset_id:
                    report.changed += 1
            if old_asset is not None and old_asset != asset_id:
                orphaned.add(old_asset)
        revive_assets(con, revived)
        upsert_files(con, root, rows)
        mark_missing_if_orphaned(con, orphaned)


def _remove_paths(catalog: Catalog, paths: list[str]) -> None:
    with catalog.write() as con:
        mark_missing_if_orphaned(con, remove_files(con, paths))
