"""Ground truth for research: which catalog face is whom, by one matching rule.

Two kinds of truth:

* :class:`Truth` - the identity of catalog faces, from a labelled file: the Parquet the
  faces were imported from (lfw-dev's ``embeddings-dlib.parquet``, a facelab export with
  an identity column), or a list of labelled photos (fgnet-dev's ``labels.tsv``, a
  spreadsheet of names per photo, WIDER-style box lists) whose faces ``facelab run``
  detected. :func:`match_truth` is **the** matcher: ``facelab evaluate``, ``facelab
  simulate``, ``facelab calibrate --truth``, calibration on lfw-dev and
  :func:`facelab.research.lfw.load` all use it, so they agree on which face a row is.
* :class:`LabeledFaces` - labelled embeddings (the catalog's human labels,
  :func:`catalog_labels`, the faces a truth names, :func:`truth_labels`, or a labelled
  Parquet, :func:`parquet_labels`) that verification and calibration score.

A truth file (:func:`read_truth_table`: Parquet, CSV or TSV) has an identity column
(``identity`` or ``person``, or the one named), a photo column (``path`` or ``photo``) or
``content_hash``, and per face optionally a box (``bbox_x/y/w/h``, else ``x/y/w/h``) or two
eye points (``left_eye_x/y``, ``right_eye_x/y``). The matching rule (:func:`match_truth`):

1. **The photo** of a row: by ``content_hash`` when the row has one (a facelab export);
   else by its path - absolute, or relative to ``root`` (default: the truth file's
   folder) - equal to a stored file path; else the row's path equals the end of a stored
   file path (as imported, relative to any images root) or of a ``path:<path>`` key (a photo
   imported without its file); else, when the file exists, by its content hash (a copy
   renamed or moved). A row that matches several photos is an error. Rows whose photo is
   not in the workspace are counted (``photos_missing``) and otherwise ignored.
2. **The face** within the photo, each face at most once:
   - rows with a box: the detected face whose box overlaps it most, by intersection over
     union at least :data:`TRUTH_MIN_IOU`, pairs taken best first (an imported face's box
     is the row's, overlap 1);
   - rows with eye points: a face whose box holds both eyes; of several, the smallest box
     (a tight box around the face, not a larger one that happens to hold it), then the one
     whose centre is nearest the eyes' midpoint;
   - a row with neither, alone on its photo: the face nearest the photo's centre (the only
     face when the photo's size is unknown); several rows with neither: the photo's faces
     in order when it holds as many (an imported file), else an error.
   Coordinates are pixels of the photo *as displayed* (EXIF orientation applied, the way
   facelab stores boxes), or with ``pixels="file"`` of the file's own pixel grid, which
   the photo's EXIF orientation then turns into displayed pixels.
   Labelled rows whose photo is in the workspace but no face of the space matches are
   *unmatched*: counted, reported, and (in the simulator) faces nobody named.

Rows without an identity have no truth. A face "of a space" is one with a vector in it, so
a projection ``proj/<name>`` has the truth of its faces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from facelab.core.boxes import pair_boxes
from facelab.core.linalg import unit
from facelab.errors import ConfigError, FacelabError, ImageError
from facelab.library.images import probe_image
from facelab.people.naming import HUMAN_SOURCES
from facelab.store import faces as stored_faces
from facelab.store.catalog import Catalog, face_vectors, space_dim
from facelab.store.clusters import unassigned_clusters
from facelab.store.hashing import file_hash
from facelab.store.library import asset_ids_by_hash, files_of_assets

__all__ = ["BOX_COLUMNS", "EYE_COLUMNS", "IDENTITY_COLUMNS", "PHOTO_COLUMNS", "PIXELS",
           "TRUTH_MIN_IOU", "LabeledFaces", "Truth", "catalog_labels", "cluster_truth",
           "identity_column", "load_truth", "match_truth", "only_space", "parquet_labels",
           "read_truth_table", "to_displayed", "truth_labels"]

#: Identity columns looked for when none is named, in this order.
IDENTITY_COLUMNS = ("identity", "person")
#: Photo columns looked for when none is named, in this order.
PHOTO_COLUMNS = ("path", "photo")
#: Box columns looked for in a truth file, in this order (lfw-dev's, then facelab export's).
BOX_COLUMNS = (("bbox_x", "bbox_y", "bbox_w", "bbox_h"), ("x", "y", "w", "h"))
#: Eye-point columns (fgnet-dev's pupils).
EYE_COLUMNS = ("left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y")
#: Least intersection over union of a labelled box and a detected box of one face. Box
#: conventions differ between detectors and annotators: on lfw-dev, dlib's square boxes
#: (``embeddings-dlib.parquet``) overlap SCRFD's taller boxes of the same face
#: (``embeddings-mobilefacenet.parquet``) by 0.69 at the median, >= 0.50 for 99.5 % of the
#: 6,262 faces and >= 0.377 for all, so PASCAL's 0.5 would drop real matches; the three
#: pairs where the two pipelines took different faces of a photo overlap <= 0.12.
TRUTH_MIN_IOU = 0.3
#: What truth coordinates are pixels of: the photo as displayed (EXIF orientation applied,
#: as facelab stores boxes) or the file's own pixel grid (before the orientation).
PIXELS = ("displayed", "file")
# Rows' geometry kinds.
_BOX, _EYES, _NONE = 0, 1, 2


@dataclass
class Truth:
    """Ground truth of catalog faces: ``identity[i]`` is the person of ``face_ids[i]``.

    ``unmatched`` holds the identities of labelled faces whose photo is in the workspace but
    that no face of the space matches (``unmatched_labels`` their codes, in the codes of
    ``labels``); ``years`` the photo year per matched face (-1 unknown); ``counts`` what the
    matching did (``rows``, ``labelled``, ``matched``, ``unmatched``, ``photos_missing``,
    ``by``: matches per rule).
    """

    space: str
    face_ids: np.ndarray      # int64, sorted
    identity: np.ndarray      # object (names)
    labels: np.ndarray        # int64 code per identity (same order as face_ids)
    paths: np.ndarray         # object: the row's photo key (path or content hash)
    unmatched: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    unmatched_labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    years: np.ndarray | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    def of(self, face_ids: np.ndarray) -> np.ndarray:
        """Identity codes of ``face_ids`` (which must be faces of the truth)."""
        pos = np.searchsorted(self.face_ids, face_ids)
        return self.labels[pos]

    def __len__(self) -> int:
        return int(self.face_ids.size)


# --------------------------------------------------------------------------- reading


def read_truth_table(path: str | os.PathLike[str]) -> pa.Table:
    """A truth file as a table: Parquet (by its magic bytes), else CSV or TSV (tab when the
    name ends in ``.tsv``/``.tab`` or the header holds a tab). Identity and photo columns
    are read as text (fgnet-dev's person ``001`` stays ``001``)."""
    path = Path(path)
    if not path.is_file():
        raise FacelabError(f"truth file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"PAR1":
        try:
            return pq.read_table(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise FacelabError(f"truth file {path} is neither Parquet nor a readable CSV/TSV: "
                               f"{str(exc).splitlines()[0]}") from None
    first = head.split(b"\n", 1)[0]
    tab = path.suffix.lower() in (".tsv", ".tab") or b"\t" in first
    text = {c: pa.string() for c in (*IDENTITY_COLUMNS, *PHOTO_COLUMNS, "content_hash")}
    try:
        return pacsv.read_csv(str(path), parse_options=pacsv.ParseOptions(
            delimiter="\t" if tab else ","), convert_options=pacsv.ConvertOptions(
            column_types=text, strings_can_be_null=True))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise FacelabError(f"truth file {path} is neither Parquet nor a readable CSV/TSV: "
                           f"{str(exc).splitlines()[0]}") from None


def _pick(cols: list[str], given: str | None, names: tuple[str, ...], what: str,
          source: str) -> str | None:
    if given is not None:
        if given not in cols:
            raise FacelabError(f"{source} has no column {given!r}; columns: {cols}")
        return given
    return next((c for c in names if c in cols), None)


def identity_column(cols: list[str], given: str | None, source: str) -> str:
    """The identity column of a table: ``given``, else the first of :data:`IDENTITY_COLUMNS`."""
    col = _pick(cols, given, IDENTITY_COLUMNS, "identity", source)
    if col is None:
        raise FacelabError(f"{source} has no identity column ({' or '.join(IDENTITY_COLUMNS)}; "
                           f"name another with --identity-col); columns: {cols}")
    return col


def _floats(table: pa.Table, names: tuple[str, ...] | None) -> np.ndarray | None:
    if names is None:
        return None
    return np.column_stack([np.asarray(pc.cast(table.column(c), pa.float64())
                                       .to_numpy(zero_copy_only=False), np.float64)
                            for c in names])


def _years(table: pa.Table) -> np.ndarray:
    """Photo year per row from a ``taken_at`` column (-1 when absent or unknown)."""
    n = table.num_rows
    if "taken_at" not in table.column_names:
        return np.full(n, -1, np.int64)
    col = table.column("taken_at")
    try:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.strptime(pc.utf8_slice_codeunits(col, 0, 10), format="%Y-%m-%d",
                              unit="s", error_is_null=True)
        years = pc.year(col)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(n, -1, np.int64)
    return np.asarray(pc.fill_null(years, -1).to_numpy(zero_copy_only=False), np.int64)


# --------------------------------------------------------------------------- photos


def _norm(p: str) -> str:
    return "/".join(part for part in p.replace("\\", "/").split("/") if part not in ("", "."))


def _suffixes(p: str) -> list[str]:
    """Every trailing part of a path: ``a/b/c.jpg`` -> ``c.jpg``, ``b/c.jpg``, ``a/b/c.jpg``."""
    parts = _norm(p).split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


class _Photos:
    """Finds the photo (asset id) of a truth row: by content hash, exact path, path suffix,
    then the content hash of the file the row names (module docstring, rule 1)."""

    def __init__(self, catalog: Catalog, root: Path | None) -> None:
        with catalog.read() as con:
            self.by_hash = asset_ids_by_hash(con)
        self.root = root
        self.exact: dict[str, int] = {}
        self.suffix: dict[str, set[int]] = {}
        for chash, aid in self.by_hash.items():
            if chash.startswith("path:"):
                for k in _suffixes(chash[5:]):
                    self.suffix.setdefault(k, set()).add(aid)
        self.files: dict[int, str] = {}
        for aid, fpath in files_of_assets(catalog, self.by_hash.values()):
            self.exact[os.path.normpath(fpath)] = aid
            self.files.setdefault(aid, fpath)
            for k in _suffixes(fpath):
                self.suffix.setdefault(k, set()).add(aid)
        self._hashed: dict[str, int | None] = {}

    def find(self, row: int, chash: str | None, path: str | None) -> int | None:
        if chash and chash in self.by_hash:
            return self.by_hash[chash]
        if not path:
            return None
        full = None
        if os.path.isabs(path) or self.root is not None:
            full = os.path.normpath(path if os.path.isabs(path) else str(self.root / path))
            for cand in (full, os.path.realpath(full)):
                if cand in self.exact:
                    return self.exact[cand]
        found = self.suffix.get(_norm(os.path.normpath(path)), set())
        if len(found) > 1:
            raise FacelabError(f"truth row {row} ({path!r}) matches {len(found)} photos; give "
                               "paths as imported (relative to the same images root) or "
                               "absolute")
        if found:
            return next(iter(found))
        if full is None:
            return None
        if full not in self._hashed:
            self._hashed[full] = (self.by_hash.get(file_hash(full))
                                  if os.path.isfile(full) else None)
        return self._hashed[full]


# --------------------------------------------------------------------------- geometry


def to_displayed(points: np.ndarray, orientation: int, width: int, height: int
                 ) -> np.ndarray:
    """Points ``(n, 2)`` in a file's pixel grid -> the displayed photo's pixels, for EXIF
    ``orientation`` 1..8 and the *displayed* ``width`` x ``height`` (the transposes of
    :data:`facelab.library.images._TRANSPOSE`, i.e. of ``PIL.ImageOps.exif_transpose``)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    fw, fh = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    out = {1: (x, y), 2: (fw - x, y), 3: (fw - x, fh - y), 4: (x, fh - y), 5: (y, x),
           6: (fh - y, x), 7: (fh - y, fw - x), 8: (y, fw - x)}.get(int(orientation), (x, y))
    return np.column_stack(out)


def _box_to_displayed(box: np.ndarray, orientation: int, width: int, height: int
                      ) -> np.ndarray:
    x, y, w, h = box
    c = to_displayed(np.array([[x, y], [x + w, y + h]]), orientation, width, height)
    lo, hi = c.min(axis=0), c.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def _match_photo(kinds: np.ndarray, geo: np.ndarray, fids: list[int], boxes: np.ndarray,
                 size: tuple[int, int] | None, row_ids: np.ndarray
                 ) -> list[tuple[int, int, str]]:
    """``(row position, face id, rule)`` pairs of one photo's rows and faces (module
    docstring, rule 2). ``geo`` holds a box or the two eyes per row (NaN for neither);
    ``row_ids`` the rows' numbers in the file, for messages."""
    out: list[tuple[int, int, str]] = []
    free = np.ones(len(fids), bool)
    rows = np.flatnonzero(kinds == _BOX)
    if rows.size and len(fids):
        for i, j in pair_boxes(geo[rows], boxes, TRUTH_MIN_IOU):
            out.append((int(rows[i]), fids[j], "box"))
            free[j] = False
    rows = np.flatnonzero(kinds == _EYES)
    if rows.size and free.any():
        x0, y0 = boxes[:, 0], boxes[:, 1]
        x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
        cands = []
        for r in rows:
            eyes = geo[r].reshape(2, 2)
            inside = free & np.all([(x0 <= e[0]) & (e[0] <= x1) & (y0 <= e[1]) & (e[1] <= y1)
                                    for e in eyes], axis=0)
            mid = eyes.mean(axis=0)
            for j in np.flatnonzero(inside):
                off = np.hypot(mid[0] - (x0[j] + x1[j]) / 2, mid[1] - (y0[j] + y1[j]) / 2)
                cands.append((boxes[j, 2] * boxes[j, 3], off, int(r), int(j)))
        taken_rows: set[int] = set()
        for _, _, r, j in sorted(cands):
            if r not in taken_rows and free[j]:
                out.append((r, fids[j], "eyes"))
                taken_rows.add(r)
                free[j] = False
    rows = np.flatnonzero(kinds == _NONE)
    left = np.flatnonzero(free)
    if rows.size == 1 and left.size:
        if left.size == 1:
            j = int(left[0])
        elif size is None:
            raise FacelabError(f"truth row {int(row_ids[rows[0]])}: its photo holds "
                               f"{left.size} faces, its size is unknown and the row has no "
                               "box or eye points to tell which is labelled")
        else:
            c = boxes[left, :2] + boxes[left, 2:] / 2
            j = int(left[np.argmin(np.hypot(c[:, 0] - size[0] / 2, c[:, 1] - size[1] / 2))])
        out.append((int(rows[0]), fids[j], "centre"))
    elif rows.size > 1:
        if rows.size != left.size:
            raise FacelabError(f"photo of truth row {int(row_ids[rows[0]])} holds "
                               f"{left.size} faces but {rows.size} rows and the file has no "
                               "box or eye points to tell them apart")
        out.extend((int(r), fids[int(j)], "order") for r, j in zip(rows, left, strict=True))
    return out


def _photo_geometry(path: str | None) -> tuple[int, tuple[int, int] | None]:
    """``(orientation, displayed size)`` of a photo file; ``(1, None)`` when unreadable."""
    if path is None or not os.path.isfile(path):
        return 1, None
    try:
        info = probe_image(path, max_pixels=1 << 40)
    except ImageError:
        return 1, None
    # HEIF decoders orient the pixels themselves: their file grid is the displayed one
    orient = 1 if info.format in ("HEIF", "AVIF") else info.orientation
    return orient, (info.width, info.height)


# --------------------------------------------------------------------------- the matcher


def match_truth(catalog: Catalog, space: str, table: pa.Table, *,
                identity_col: str | None = None, path_col: str | None = None,
                root: str | os.PathLike[str] | None = None, pixels: str = "displayed",
                source: str = "the truth file") -> Truth:
    """Match the rows of a labelled ``table`` to the faces of ``space`` (the rule is in the
    module docstring). ``identity_col`` / ``path_col`` default to the first of
    :data:`IDENTITY_COLUMNS` / :data:`PHOTO_COLUMNS` present; relative paths are relative
    to ``root``. Returns a possibly empty :class:`Truth`; raises :class:`FacelabError` when
    a column is missing or a row cannot be matched unambiguously. ``source`` names the
    table in messages."""
    if pixels not in PIXELS:
        raise ConfigError(f"pixels={pixels!r} must be one of {', '.join(PIXELS)}")
    cols = table.column_names
    id_col = identity_column(cols, identity_col, source)
    photo_col = _pick(cols, path_col, PHOTO_COLUMNS, "photo", source)
    by_hash = "content_hash" in cols
    if not by_hash and photo_col is None:
        raise FacelabError(f"{source} has no photo column ({' or '.join(PHOTO_COLUMNS)}, or "
                           f"content_hash) to find each row's photo; columns: {cols}")
    box_cols = next((b for b in BOX_COLUMNS if all(c in cols for c in b)), None)
    eye_cols = EYE_COLUMNS if all(c in cols for c in EYE_COLUMNS) else None
    names = table.column(id_col).to_pylist()
    hashes = table.column("content_hash").to_pylist() if by_hash else [None] * len(names)
    paths = (table.column(photo_col).to_pylist() if photo_col is not None
             else [None] * len(names))
    n = table.num_rows
    geo = np.full((n, 4), np.nan)
    kinds = np.full(n, _NONE, np.int8)
    for cols_, kind in ((eye_cols, _EYES), (box_cols, _BOX)):   # a box wins over eyes
        vals = _floats(table, cols_)
        if vals is not None:
            ok = np.isfinite(vals).all(axis=1)
            geo[ok], kinds[ok] = vals[ok], kind

    photos = _Photos(catalog, Path(root) if root is not None else None)
    faces = stored_faces.space_faces(catalog, space)
    faces_of: dict[int, list[tuple[int, np.ndarray]]] = {}
    for fid, aid, box in zip(faces.face_id.tolist(), faces.asset_id.tolist(), faces.box,
                             strict=True):
        faces_of.setdefault(aid, []).append((fid, box))
    rows_of: dict[int, list[int]] = {}
    labelled = missing = 0
    for i in range(n):
        if names[i] is None:
            continue
        labelled += 1
        aid = photos.find(i, None if hashes[i] is None else str(hashes[i]),
                          None if paths[i] is None else str(paths[i]))
        if aid is None:
            missing += 1
        else:
            rows_of.setdefault(aid, []).append(i)

    need_size = {aid for aid, idx in rows_of.items()
                 if sum(kinds[i] == _NONE for i in idx) == 1 and len(faces_of.get(aid, ())) > 1}
    sizes = {f.asset_id: (f.width, f.height) for f in stored_faces.faces_on_photos(
        catalog, (fid for aid in need_size for fid, _ in faces_of[aid])).values()
             if f.width and f.height}
    matched: list[tuple[int, int]] = []
    by: dict[str, int] = {}
    for aid, idx in rows_of.items():
        on_photo = faces_of.get(aid, [])
        if not on_photo:
            continue
        rows = np.asarray(idx, np.int64)
        g = geo[rows].copy()
        size = sizes.get(aid)
        if pixels == "file" and (kinds[rows] != _NONE).any():
            orient, disp = _photo_geometry(photos.files.get(aid))
            size = size or disp
            if orient != 1 and disp is not None:
                for k, r in enumerate(rows):
                    if kinds[r] == _BOX:
                        g[k] = _box_to_displayed(g[k], orient, *disp)
                    elif kinds[r] == _EYES:
                        g[k] = to_displayed(g[k].reshape(2, 2), orient, *disp).ravel()
        for pos, fid, rule in _match_photo(kinds[rows], g, [f for f, _ in on_photo],
                                           np.array([b for _, b in on_photo]).reshape(-1, 4),
                                           size, rows):
            matched.append((fid, int(rows[pos])))
            by[rule] = by.get(rule, 0) + 1

    matched.sort()
    fid = np.array([f for f, _ in matched], np.int64)
    row_idx = np.array([r for _, r in matched], np.int64)
    hit = set(row_idx.tolist())
    lost = [i for idx in rows_of.values() for i in idx if i not in hit]
    identity = np.array([str(names[i]) for i in row_idx], dtype=object)
    lost_names = np.array([str(names[i]) for i in lost], dtype=object)
    uniq, codes = np.unique(np.concatenate([identity, lost_names]).astype(str),
                            return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    keys = [hashes[i] if hashes[i] is not None else paths[i] for i in row_idx]
    counts = {"source": source, "rows": n, "labelled": labelled, "matched": int(fid.size),
              "unmatched": len(lost), "photos_missing": missing, "by": by,
              "min_iou": TRUTH_MIN_IOU, "pixels": pixels, "people": int(uniq.size)}
    return Truth(space, fid, identity, codes[:fid.size],
                 np.array([None if k is None else str(k) for k in keys], dtype=object),
                 lost_names, codes[fid.size:], _years(table).take(row_idx), counts)


def only_space(catalog: Catalog, space: str | None) -> str:
    """``space`` checked against the workspace, or its only space when None."""
    known = [s["space"] for s in catalog.spaces()]
    if space is not None:
        if space not in known:
            raise FacelabError(f"space {space!r} is not in this workspace; it has {known}")
        return space
    if len(known) != 1:
        raise FacelabError(f"say which space to use (space=...); this workspace has "
                           f"{known or 'none'}")
    return known[0]


def load_truth(catalog: Catalog, path: str | os.PathLike[str], *, space: str | None = None,
               identity_col: str | None = None, path_col: str | None = None,
               root: str | os.PathLike[str] | None = None, pixels: str = "displayed"
               ) -> Truth:
    """The true identity of the faces of ``space`` from a truth file (Parquet, CSV or TSV;
    :func:`read_truth_table`, :func:`match_truth`); relative photo paths are relative to
    ``root``, default the file's folder. ``space`` defaults to the workspace's only space.
    Raises :class:`FacelabError` when the file is missing or no row matches a face."""
    space = only_space(catalog, space)
    table = read_truth_table(path)
    root = Path(path).resolve().parent if root is None else Path(root)
    truth = match_truth(catalog, space, table, identity_col=identity_col, path_col=path_col,
                        root=root, pixels=pixels, source=str(path))
    if not len(truth):
        if not len(stored_faces.space_faces(catalog, space)):
            raise FacelabError(f"space {space!r} holds no faces; import or detect them first")
        c = truth.counts
        raise FacelabError(
            f"no row of {path} matches a face of space {space!r}: {c['labelled']} labelled "
            f"rows, {c['photos_missing']} of them name a photo not in the workspace (paths "
            f"are relative to {root}; --truth-root sets it), {c['unmatched']} a photo where "
            "no detected face fits the row's box or eyes")
    return truth


def cluster_truth(catalog: Catalog, space: str, face_ids: np.ndarray, labels: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(true, pred)`` over the unassigned faces among ``face_ids`` (by face id): what
    clustering saw. ``true`` holds ``labels`` of those faces; ``pred`` a code per active
    cluster of ``space`` (in cluster-id order), ``-1`` for faces in none (noise)."""
    ids, cids = unassigned_clusters(catalog, space)
    labels = np.asarray(labels)
    truth = dict(zip(np.asarray(face_ids).tolist(), range(len(labels)), strict=True))
    rows = [(truth[f], c) for f, c in zip(ids.tolist(), cids, strict=True) if f in truth]
    codes = {c: i for i, c in enumerate(sorted({c for _, c in rows if c is not None}))}
    true = labels[np.array([t for t, _ in rows], np.int64)]
    pred = np.array([codes[c] if c is not None else -1 for _, c in rows], np.int64)
    return true, pred


# --------------------------------------------------------------------------- labeled faces


@dataclass
class LabeledFaces:
    """Embeddings with their truth. ``face_ids`` are catalog ids (-1 for external rows)."""

    face_ids: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    quality: np.ndarray
    years: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, mask: np.ndarray) -> LabeledFaces:
        return LabeledFaces(self.face_ids[mask], self.labels[mask], self.vectors[mask],
                            self.quality[mask], self.years[mask], self.source)


def catalog_labels(catalog: Catalog, space: str) -> LabeledFaces:
    """Faces of ``space`` a person decided (``people.HUMAN_SOURCES``), with their person.

    Automatic assignments are left out: a threshold measured on the machine's own decisions
    would grade itself. ``years`` is the photo's year (-1 when unknown), which temporal
    prototypes use. Ordered by face id.
    """
    sources = sorted(HUMAN_SOURCES)
    with catalog.read() as con:
        if space_dim(con, space) is None:
            raise FacelabError(f"no space {space!r} in {catalog.path}")
        rows = stored_faces.labeled_face_vectors(con, space, sources=sources)
    return LabeledFaces(rows.face_ids, rows.person_ids, rows.vectors, rows.quality, rows.years,
                        f"catalog labels ({', '.join(sources)})")


def truth_labels(catalog: Catalog, truth: Truth, *, source: str | None = None) -> LabeledFaces:
    """The faces a :class:`Truth` names, with their vectors in its space and their quality;
    ``years`` from the truth file's ``taken_at`` (-1 when it has none). By face id."""
    with catalog.read() as con:
        ids, vecs = face_vectors(con, truth.space, truth.face_ids)
    keep = np.isin(truth.face_ids, ids)
    on = stored_faces.faces_on_photos(catalog, ids)
    years = truth.years if truth.years is not None else np.full(len(truth), -1, np.int64)
    return LabeledFaces(ids, truth.labels[keep], unit(vecs),
                        np.array([on[int(f)].quality for f in ids], np.float32),
                        np.asarray(years, np.int64)[keep],
                        source or str(truth.counts.get("source", "truth")))


def parquet_labels(path: str | os.PathLike[str], *, identity_col: str | None = None,
                   embedding_col: str = "embedding") -> LabeledFaces:
    """Labeled embeddings from a Parquet file (e.g. lfw-dev's ``embeddings-dlib.parquet``).

    Rows without an identity are dropped. ``face_ids`` are -1 (not catalog faces), quality
    1 and years unknown, so prototype choice falls back to order.
    """
    table = pq.read_table(str(path))
    identity_col = identity_column(table.column_names, identity_col, str(path))
    if embedding_col not in table.column_names:
        raise FacelabError(f"{path} has no column {embedding_col!r}; columns: "
                           f"{table.column_names}")
    table = table.filter(pc.is_valid(table.column(identity_col)))
    arr = table.column(embedding_col).combine_chunks()
    n = table.num_rows
    if n == 0:
        raise FacelabError(f"{path} holds no labeled rows")
    flat = np.asarray(arr.flatten(), np.float32)
    if flat.size % n:
        raise FacelabError(f"{path}: embeddings of {embedding_col!r} differ in length")
    labels = np.array([str(v) for v in table.column(identity_col).to_pylist()], dtype=object)
    return LabeledFaces(np.full(n, -1, np.int64), labels, unit(flat.reshape(n, -1)),
                        np.full(n, 1, np.float32), np.full(n, -1, np.int64),
                        f"{os.path.basename(str(path))}:{identity_col}")
