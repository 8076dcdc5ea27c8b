"""What an incremental clustering keeps between passes: each open cluster's vector sum and
size, and the vectors of the noise faces; in a folder beside the catalog.

Average linkage puts a face in a cluster by their all-pairs mean cosine distance, ``1 - q .
sum / n`` for unit vectors: a cluster's sum and size are all a pass needs to measure a new
face against it. The faces that join no cluster are clustered with the noise faces (seen by
a clustering, in no cluster) near them. Reading the members' and the noise faces' vectors on
every pass cost most of it: a read of scattered faces decompresses every row group of the
catalog's vectors (half a second at 300 000 faces, whether 200 faces or 50 000 are read).
The sums of 22 000 clusters and the vectors of 53 000 noise faces are mapped in no time.

The folder (``index/<space>.clusters/``, beside the vector index and, like it, derived from
the catalog; one ``.npy`` file per array) holds per cluster its id, how many open
(unassigned) members it had, a key of those members (the xor of DuckDB's ``hash`` of their
face ids) and the sum of their unit vectors; and the ids and unit vectors of the noise
faces; both in two blocks (:class:`SumBlocks`, :class:`NoiseVectors`): a main one kept whole
from pass to pass (linked into the new folder, not written again) and the entries made since.
It is trusted one entry at a time: a cluster's
sum only while the catalog's open members of that cluster have the same count and key
(labeling, merging, splitting or returning a face changes them), a noise vector only for a
face that is still noise, and nothing when vectors of the space were rewritten in place
after the folder was saved. :func:`load_kept` reads again what it cannot trust, and
:func:`save_kept` replaces the folder whole (written aside, then moved in).

Not a table: 46 MB of sums written into DuckDB took 0.6 s (with the checkpoint it
triggers) at the end of every clustering.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from facelab.core.incremental import label_sums
from facelab.core.knn import as_unit_rows, top_k_among
from facelab.store.catalog import Catalog, temp_table
from facelab.store.clusters import SKIPPED, noise_faces
from facelab.store.vectors import index_path

log = logging.getLogger(__name__)

__all__ = ["Kept", "MemberKeys", "NoiseVectors", "SumBlocks", "kept_after", "kept_path",
           "load_kept", "member_keys", "save_kept"]


def kept_path(workspace: Path, space: str) -> Path:
    """The folder where what incremental clustering keeps for ``space`` lives: beside its
    vector index."""
    return index_path(workspace, space).with_suffix(".clusters")


#: The arrays of a kept folder, one ``.npy`` file each, memory-mapped when read.
_ARRAYS = ("cluster_ids", "sizes", "keys", "sums", "noise_ids", "noise_vectors", "extra_ids",
           "extra_vectors")
#: ... and those a folder saved before the sums had two blocks lacks (read as empty).
_EXTRA_SUMS = ("extra_cluster_ids", "extra_sizes", "extra_keys", "extra_sums")
_MAIN_SUMS = ("cluster_ids", "sizes", "keys", "sums")
_MAIN_NOISE = ("noise_ids", "noise_vectors")
#: The main blocks are kept whole from pass to pass (linked into the new folder, not written
#: again: 46 MB of sums and 110 MB of noise vectors at 300 000 faces) until this share of
#: their entries is no longer current...
COMPACT_DEAD = 0.5
#: ... or the entries kept beside them (made since) reach this share of them.
COMPACT_EXTRA = 0.25


@dataclass
class SumBlocks:
    """The unit-vector sums of the open clusters, held in two blocks: ``main`` (kept whole
    between passes, memory-mapped from ``main_path``, where it was saved with the id, size
    and key of each sum's cluster then: it may hold sums no longer current, which nothing
    points to) and ``extra`` (in memory: the sums made since). ``at[i]`` is where the sum
    of the ``i``-th open cluster is: a row of ``main``, a row of ``extra`` offset by
    ``len(main)``, or -1 (none). ``blocks[i]`` reads the sums of rows ``i`` in their order.
    """

    at: np.ndarray                # int64 (m,)
    main: np.ndarray              # float32 (p, d), mapped
    extra: np.ndarray             # float32 (q, d)
    main_path: Path | None = None

    @classmethod
    def of(cls, sums: np.ndarray) -> SumBlocks:
        """All of ``sums`` (m, d), in memory, in order."""
        sums = np.asarray(sums, np.float32)
        return cls(np.arange(len(sums), dtype=np.int64), sums[:0], sums)

    def __len__(self) -> int:
        return self.at.size

    def __getitem__(self, rows: np.ndarray | int) -> np.ndarray:
        if np.ndim(rows) == 0:
            return self[np.atleast_1d(rows)][0]
        at = self.at[rows]
        if np.any(at < 0):
            raise KeyError("no kept sum for some of these clusters")
        out = np.empty((at.size, self.main.shape[1]), np.float32)
        in_main = at < len(self.main)
        out[in_main] = self.main[at[in_main]]
        out[~in_main] = self.extra[at[~in_main] - len(self.main)]
        return out

    def nearest(self, queries: np.ndarray, sizes: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """For each query (unit rows), the ``k`` open clusters (rows, -1: none) whose mean
        (sum / size; clusters of size 0 count as none) is most similar, and those
        similarities: each block is searched as it is, mapped, never divided into a copy."""
        sizes = np.asarray(sizes, np.int64)
        found_r, found_s = [], []
        for lo, block in ((0, self.main), (len(self.main), self.extra)):
            if len(block) == 0:
                continue
            rows = np.flatnonzero((self.at >= lo) & (self.at < lo + len(block)) & (sizes > 0))
            owner = np.full(len(block), -1, np.int64)  # block row -> open cluster
            owner[self.at[rows] - lo] = rows
            scale = np.zeros(len(block), np.float32)
            scale[self.at[rows] - lo] = 1.0 / sizes[rows]
            got, sims = top_k_among(queries, block, k, scale=scale)
            got = np.where(got >= 0, owner[np.maximum(got, 0)], -1)
            found_r.append(got)
            found_s.append(np.where(got >= 0, sims, -np.inf).astype(np.float32))
        if not found_r:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0),
                                                                      np.float32)
        rows, sims = np.hstack(found_r), np.hstack(found_s)
        if rows.shape[1] > k:  # the k best of both blocks
            best = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            rows = np.take_along_axis(rows, best, axis=1)
            sims = np.take_along_axis(sims, best, axis=1)
        return rows, sims


@dataclass
class NoiseVectors:
    """The noise faces of a space (``live``, ascending) and their unit vectors, held in two
    blocks: ``main`` (kept whole between passes, memory-mapped from ``main_path``; it may
    still hold faces that are no longer noise) and ``extra`` (the others). A pass that
    changes a few noise faces writes only ``extra`` again."""

    live: np.ndarray
    main_ids: np.ndarray
    main_vectors: np.ndarray
    extra_ids: np.ndarray
    extra_vectors: np.ndarray
    main_path: Path | None = None  # the folder ``main`` is mapped from (None: in memory)

    @classmethod
    def empty(cls, dim: int, live: np.ndarray | None = None) -> NoiseVectors:
        """No vector kept (yet) for the noise faces ``live`` (None: none)."""
        ids, vecs = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return cls(ids if live is None else live, ids, vecs, ids, vecs)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The unit vectors of ``ids`` (each in one of the blocks), in their order."""
        ids = np.asarray(ids, np.int64)
        out = np.zeros((ids.size, self.main_vectors.shape[1]), np.float32)
        have = np.zeros(ids.size, bool)
        for block_ids, block_vecs in ((self.main_ids, self.main_vectors),
                                      (self.extra_ids, self.extra_vectors)):
            pos, hit = _find(block_ids, ids)
            hit &= ~have
            out[hit] = block_vecs[pos[hit]]
            have |= hit
        if not have.all():
            raise KeyError(f"no kept vector for noise faces {ids[~have][:3].tolist()}")
        return out

    def near(self, queries: np.ndarray, k: int, reach: float) -> np.ndarray:
        """The noise faces among the ``k`` nearest of any of ``queries`` (unit rows) within
        cosine distance ``reach``, ascending; exactly, block by block."""
        found = [np.zeros(0, np.int64)]
        for block_ids, block_vecs in ((self.main_ids, self.main_vectors),
                                      (self.extra_ids, self.extra_vectors)):
            if block_ids.size == 0 or len(queries) == 0:
                continue
            rows, sims = top_k_among(queries, block_vecs, k)
            ids = block_ids[rows[(rows >= 0) & (1.0 - sims <= reach)]]
            found.append(ids[np.isin(ids, self.live)])
        return np.unique(np.concatenate(found))

    def after(self, live: np.ndarray, placed: tuple[np.ndarray, np.ndarray]) -> NoiseVectors:
        """The blocks for the noise faces ``live`` after a pass, whose new faces ``placed``
        (``(face_ids, unit vectors)``) may be noise now: ``main`` as it is while it holds
        most of them, else everything in one new block. Faces found nowhere are left out
        (read when next needed)."""
        live = np.asarray(live, np.int64)
        in_main = _find(self.main_ids, live)[1]
        p_ids, p_vecs = np.asarray(placed[0], np.int64), placed[1]
        if (p_ids[1:] <= p_ids[:-1]).any():
            order = np.argsort(p_ids)
            p_ids, p_vecs = p_ids[order], p_vecs[order]
        rest = live[~in_main]
        pos_e, in_extra = _find(self.extra_ids, rest)
        pos_p, in_placed = _find(p_ids, rest)
        in_placed &= ~in_extra
        if in_placed.all() and rest.size == p_ids.size:  # the noise is what was placed
            rest_vecs = p_vecs  # (a full clustering's: 400 MB at a million faces, not copied)
        else:
            keep = in_extra | in_placed
            rest_vecs = np.zeros((rest.size, self.main_vectors.shape[1]), np.float32)
            rest_vecs[in_extra] = self.extra_vectors[pos_e[in_extra]]
            rest_vecs[in_placed] = p_vecs[pos_p[in_placed]]
            rest, rest_vecs = rest[keep], rest_vecs[keep]
        live = np.union1d(live[in_main], rest)
        dead = self.main_ids.size - int(in_main.sum())
        if self.main_ids.size and dead <= COMPACT_DEAD * self.main_ids.size and \
                rest.size <= COMPACT_EXTRA * self.main_ids.size:
            return NoiseVectors(live, self.main_ids, self.main_vectors, rest, rest_vecs,
                                self.main_path)
        if not in_main.any():  # all of it is the rest, in order: one block as it is
            return NoiseVectors(live, rest, rest_vecs, np.zeros(0, np.int64),
                                np.zeros((0, rest_vecs.shape[1]), np.float32))
        ids = np.concatenate([live[np.isin(live, self.main_ids)], rest])
        vecs = np.concatenate([self.vectors(ids[:ids.size - rest.size]), rest_vecs])
        order = np.argsort(ids)
        return NoiseVectors(live, ids[order], vecs[order], np.zeros(0, np.int64),
                            np.zeros((0, vecs.shape[1]), np.float32))


@dataclass
class Kept:
    """The open clusters of a space with their sums (``cluster_ids[i]`` has ``sizes[i]``
    open members, key ``keys[i]`` and unit-vector sum ``sums[i]``), and its noise faces
    with their unit vectors."""

    cluster_ids: np.ndarray    # str (m,)
    sizes: np.ndarray          # int64 (m,)
    keys: np.ndarray           # uint64 (m,)
    sums: SumBlocks            # (m, d) as blocks: sums[rows] reads them
    trusted: np.ndarray        # bool (m,): may be saved (False: summed with a face left out)
    noise: NoiseVectors
    summed: int = 0            # sums made again from the members' vectors
    noise_read: int = 0        # noise vectors read from the catalog


@dataclass(frozen=True)
class MemberKeys:
    """The open clusters of a space by id (ascending), with how many open members each has
    and the key of those members: what a kept sum must match."""

    cluster_ids: np.ndarray  # str
    sizes: np.ndarray        # int64
    keys: np.ndarray         # uint64

    def find(self, cluster_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: where each of ``cluster_ids`` is here, and whether it is."""
        return _find(self.cluster_ids, np.asarray(cluster_ids, dtype=str))

    def held_in(self, cluster_ids: np.ndarray, sizes: np.ndarray, keys: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, same)``: where each of these clusters is in the given ones (ascending
        ids, with their sizes and keys), and whether it is there with the same open
        members (count and key)."""
        rows, ok = _find(cluster_ids, self.cluster_ids)
        ok[ok] &= (sizes[rows[ok]] == self.sizes[ok]) & (keys[rows[ok]] == self.keys[ok])
        return rows, ok


def _find(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(sorted_ids, wanted)
    ok = pos < sorted_ids.size
    ok[ok] &= sorted_ids[pos[ok]] == wanted[ok]
    return np.where(ok, pos, 0), ok


def member_keys(con: duckdb.DuckDBPyConnection, space: str) -> MemberKeys:
    """The open (active or skipped) clusters of ``space`` with their open members' count
    and key (the xor of DuckDB's ``hash`` of their face ids)."""
    got = con.execute(
        "SELECT f.cluster_id, count(*) AS n, bit_xor(hash(f.face_id)) AS k FROM faces f JOIN "
        "clusters c ON c.cluster_id = f.cluster_id WHERE c.space = ? AND c.status IN "
        "('active', ?) AND f.person_id IS NULL GROUP BY f.cluster_id ORDER BY f.cluster_id",
        [space, SKIPPED]).fetchnumpy()
    ids = np.asarray(got["cluster_id"], dtype=str)
    order = np.argsort(ids)  # numpy's order, which searchsorted needs
    return MemberKeys(ids[order], np.asarray(got["n"], np.int64)[order],
                      np.asarray(got["k"], np.uint64)[order])


def _load(path: Path, generation_floor: int) -> dict[str, np.ndarray]:
    """The arrays of the folder, memory-mapped (loading 156 MB took 0.6 s, mapping it
    nothing); empty when there is none, it cannot be read, or it was saved before the
    space's vectors were last rewritten."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if int(meta["generation"]) < generation_floor:
            return {}
        out = {k: np.load(path / f"{k}.npy", mmap_mode="r", allow_pickle=False)
               for k in _ARRAYS}
        for k in _EXTRA_SUMS:
            out[k] = np.load(path / f"{k}.npy", allow_pickle=False) \
                if (path / f"{k}.npy").exists() else out[k[len("extra_"):]][:0]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s unreadable (%s): its clusters are summed again", path, e)
        return {}
    m = len(out["cluster_ids"])
    e = len(out["extra_cluster_ids"])
    if len(out["sizes"]) != m or len(out["keys"]) != m or len(out["sums"]) != m or \
            len(out["extra_sizes"]) != e or len(out["extra_keys"]) != e or \
            len(out["extra_sums"]) != e or \
            len(out["noise_ids"]) != len(out["noise_vectors"]) or \
            len(out["extra_ids"]) != len(out["extra_vectors"]):
        log.warning("%s holds arrays of different lengths: its clusters are summed again",
                    path)
        return {}
    return out


def save_kept(catalog: Catalog, space: str, kept: Kept) -> None:
    """Write the trusted part of ``kept`` as the space's folder, replacing it whole: written
    aside, then moved in, so a killed process leaves the old folder, the new one, or none
    (and the next pass sums the clusters again). The main blocks that are mapped from the
    folder now are linked into the new one, not written again, while most of their entries
    are current and those made since stay few; else each is written again whole."""
    path = kept_path(catalog.workspace, space)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    arrays = _sum_arrays(kept)  # the main block's arrays too when it is written again
    links: dict[str, Path] = {}  # an unchanged main block's files: linked, not written again
    if "sums" not in arrays and kept.sums.main_path is not None:
        links.update(dict.fromkeys(_MAIN_SUMS, kept.sums.main_path))
    noise = kept.noise
    arrays.update({"extra_ids": np.asarray(noise.extra_ids, np.int64),
                   "extra_vectors": np.asarray(noise.extra_vectors, np.float32)})
    if noise.main_path is not None and _linkable(noise.main_path, _MAIN_NOISE):
        links.update(dict.fromkeys(_MAIN_NOISE, noise.main_path))
    else:
        arrays.update({"noise_ids": np.asarray(noise.main_ids, np.int64),
                       "noise_vectors": np.asarray(noise.main_vectors, np.float32)})
    for name, folder in links.items():
        os.link(folder / f"{name}.npy", tmp / f"{name}.npy")
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
    (tmp / "meta.json").write_text(json.dumps({"generation": catalog.generation(space)}))
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _linkable(folder: Path | None, names: tuple[str, ...]) -> bool:
    """Whether ``folder`` still holds the files of a main block (it may have been swept)."""
    return folder is not None and all((folder / f"{k}.npy").exists() for k in names)


def _sum_arrays(kept: Kept) -> dict[str, np.ndarray]:
    """The sum arrays to write for the trusted clusters of ``kept``: only the extra ones
    while its main block may be linked (most of it current, few made since), else all of
    them as one main block. By cluster id, for searchsorted."""
    blocks = kept.sums
    ids = np.asarray(kept.cluster_ids, dtype=str)
    keep = np.flatnonzero(np.asarray(kept.trusted, bool) & (blocks.at >= 0))
    keep = keep[np.argsort(ids[keep])]
    p = len(blocks.main)
    in_extra = keep[blocks.at[keep] >= p]
    current = keep.size - in_extra.size  # main rows still pointed to

    def rows_of(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        return (ids[rows], np.asarray(kept.sizes, np.int64)[rows],
                np.asarray(kept.keys, np.uint64)[rows], blocks[rows])

    if p and _linkable(blocks.main_path, _MAIN_SUMS) and p - current <= COMPACT_DEAD * p \
            and in_extra.size <= COMPACT_EXTRA * p:
        return dict(zip(_EXTRA_SUMS, rows_of(in_extra), strict=True))
    return {**dict(zip(_MAIN_SUMS, rows_of(keep), strict=True)),
            **dict(zip(_EXTRA_SUMS, rows_of(keep[:0]), strict=True))}


def _sweep(path: Path) -> None:
    """Remove the folders a killed pass left beside ``path`` (``.tmp-<pid>``, ``.old-<pid>``
    of a process that is gone); those of a live process are its own business."""
    for leftover in path.parent.glob(f"{path.name}.*-*"):
        kind, _, pid = leftover.name[len(path.name) + 1:].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def load_kept(catalog: Catalog, space: str, *, leave_out: np.ndarray | None = None) -> Kept:
    """Every open cluster of ``space`` with the sum of its open members' unit vectors, and
    every noise face with its unit vector.

    What the file holds is used while it still holds; the rest is read from the catalog:
    the sums of clusters whose open members changed, from their members' vectors, and the
    vectors of noise faces it lacks. ``leave_out`` (face ids: new faces about to be placed
    again) count in no cluster and as no noise; a cluster holding one is summed without it,
    and not trusted to the file.
    """
    leave_out = np.zeros(0, np.int64) if leave_out is None else np.asarray(leave_out,
                                                                           np.int64)
    with catalog.read() as con:
        keys = member_keys(con, space)
        held = np.zeros(0, str)
        if leave_out.size:
            with temp_table(con, "_fl_out", face_id=leave_out):
                held = np.array([str(r[0]) for r in con.execute(
                    "SELECT DISTINCT cluster_id FROM faces WHERE cluster_id IS NOT NULL AND "
                    "face_id IN (SELECT face_id FROM _fl_out)").fetchall()], dtype=str)
    dim = catalog.space_dim(space) or 0
    saved = _load(kept_path(catalog.workspace, space), catalog.rewritten_at(space))
    if saved and any(saved[k].shape[1:] != (dim,) for k in ("sums", "extra_sums",
                                                             "noise_vectors", "extra_vectors")):
        saved = {}  # of another dimension: the space was made again
    m = keys.cluster_ids.size
    trusted = ~np.isin(keys.cluster_ids, held)
    at = np.full(m, -1, np.int64)
    main, extra = np.zeros((0, dim), np.float32), [np.zeros((0, dim), np.float32)]
    if saved:
        main = saved["sums"]
        for prefix in ("", "extra_"):  # a sum in main is used as it is, mapped
            rows, ok = keys.held_in(*(np.asarray(saved[prefix + k]) for k in _MAIN_SUMS[:3]))
            ok &= trusted & (at < 0)
            if prefix:
                extra.append(np.asarray(saved["extra_sums"][rows[ok]], np.float32))
                at[ok] = len(main) + np.arange(int(ok.sum()))
            else:
                at[ok] = rows[ok]
    sizes = keys.sizes.copy()
    stale = np.flatnonzero(at < 0)
    if stale.size:
        got, sizes[stale] = _sum_members(catalog, space, keys.cluster_ids[stale].tolist(),
                                         leave_out)
        at[stale] = len(main) + sum(map(len, extra)) + np.arange(stale.size)
        extra.append(got)
    noise, read = _noise(catalog, space, saved, leave_out, dim)
    sums = SumBlocks(at, main, np.concatenate(extra),
                     kept_path(catalog.workspace, space) if saved else None)
    return Kept(keys.cluster_ids, sizes, keys.keys, sums, trusted, noise,
                summed=int(stale.size), noise_read=read)


def kept_after(catalog: Catalog, space: str, kept: Kept | None,
               computed: dict[str, tuple[np.ndarray, int]],
               placed: tuple[np.ndarray, np.ndarray]) -> Kept:
    """What to keep after a pass: the open clusters now, each with its sum where it is
    known (as it was in ``kept``, for a cluster whose open members did not change; from
    ``computed``, ``{cluster_id: (sum, size)}``, for those the pass grew or formed; the rest
    are summed by the next pass), and the noise faces now with the vectors ``kept`` had or
    those of the faces the pass ``placed`` (``(face_ids, unit vectors)``)."""
    with catalog.read() as con:
        keys = member_keys(con, space)
        noise = noise_faces(catalog, space)
    dim = catalog.space_dim(space) or 0
    before = kept.sums if kept is not None else SumBlocks.of(np.zeros((0, dim), np.float32))
    p = len(before.main)
    at = np.full(keys.cluster_ids.size, -1, np.int64)
    extra = [np.zeros((0, dim), np.float32)]
    if kept is not None and kept.cluster_ids.size:
        rows, found = keys.find(kept.cluster_ids)
        same = found & kept.trusted & (before.at >= 0) & (keys.keys[rows] == kept.keys) & \
            (keys.sizes[rows] == kept.sizes)
        rows, src = rows[same], before.at[same]
        at[rows[src < p]] = src[src < p]  # in main: stays there
        extra.append(before.extra[src[src >= p] - p])
        at[rows[src >= p]] = p + np.arange(int((src >= p).sum()))
    if computed:
        rows, found = keys.find(np.array(list(computed), dtype=str))
        found &= keys.sizes[rows] == np.array([n for _, n in computed.values()], np.int64)
        vecs = np.stack([np.asarray(v, np.float32) for v, _ in computed.values()])[found]
        at[rows[found]] = p + sum(map(len, extra)) + np.arange(len(vecs))
        extra.append(vecs)
    noise_before = kept.noise if kept is not None else NoiseVectors.empty(dim)
    parts = [e for e in extra if len(e)] or extra[:1]
    sums = SumBlocks(at, before.main, parts[0] if len(parts) == 1 else np.concatenate(parts),
                     before.main_path)
    return Kept(keys.cluster_ids, keys.sizes, keys.keys, sums, at >= 0,
                noise_before.after(noise, placed))


def _noise(catalog: Catalog, space: str, saved: dict[str, np.ndarray], leave_out: np.ndarray,
           dim: int) -> tuple[NoiseVectors, int]:
    """The noise faces of ``space`` (but ``leave_out``) with their unit vectors: as kept in
    ``saved``, and the ones it lacks read from the catalog (how many: the second value)."""
    live = np.setdiff1d(noise_faces(catalog, space), leave_out)
    if saved:
        noise = NoiseVectors(live, saved["noise_ids"], saved["noise_vectors"],
                             np.asarray(saved["extra_ids"]), np.asarray(saved["extra_vectors"]),
                             kept_path(catalog.workspace, space))
    else:
        noise = NoiseVectors.empty(dim, live)
    missing = live[~(_find(noise.main_ids, live)[1] | _find(noise.extra_ids, live)[1])]
    if missing.size:
        got, vecs = catalog.vectors(space, missing)
        vecs = as_unit_rows(vecs, "vectors") if len(vecs) else np.zeros((0, dim), np.float32)
        ids = np.concatenate([noise.extra_ids, got])
        order = np.argsort(ids)
        noise.extra_ids = ids[order]
        noise.extra_vectors = np.concatenate([noise.extra_vectors, vecs])[order]
        noise.live = np.setdiff1d(live, np.setdiff1d(missing, got))  # no vector: not here
    return noise, int(missing.size)


def _sum_members(catalog: Catalog, space: str, cids: list[str], leave_out: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The sum of the open members' unit vectors of each of ``cids`` (but ``leave_out``),
    ``(len(cids), d)``, and how many members each has."""
    with catalog.read() as con, temp_table(con, "_fl_stale",
                                           cluster_id=np.array(cids, dtype=str)):
        got = con.execute("SELECT face_id, cluster_id FROM faces WHERE person_id IS NULL AND "
                          "cluster_id IN (SELECT cluster_id FROM _fl_stale)").fetchnumpy()
    face_ids = np.asarray(got["face_id"], np.int64)
    which = {c: j for j, c in enumerate(cids)}
    labels = np.array([which[str(c)] for c in got["cluster_id"].tolist()], np.int64)
    keep = ~np.isin(face_ids, leave_out)
    face_ids, labels = face_ids[keep], labels[keep]
    order = np.argsort(face_ids)
    ids, vecs = catalog.vectors(space, face_ids[order])
    labels = labels[order][np.isin(face_ids[order], ids)]
    return label_sums(vecs, labels, len(cids)), np.bincount(labels, minlength=len(cids))
