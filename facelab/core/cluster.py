"""Clustering of face embeddings on a sparse k-nearest-neighbour graph.

Everything here is a pure function of NumPy arrays (embeddings, photo ids) returning plain
labels; :mod:`facelab.people.clusters` reads the unassigned faces, calls
:class:`FaceClusterer` (or :func:`cluster_faces`) and stores the labels. Which parameters
suit an embedding space is policy, not core: ``settings.resolve(space).cluster_params()``.

Scale
    No function builds an n x n matrix. Each face keeps its ``k`` nearest neighbours by cosine
    distance (:func:`facelab.core.knn.knn_graph`, O(n k) memory), the graph is symmetrised
    into a sparse distance matrix (:func:`facelab.core.knn.knn_csr`), and all three methods
    run on that graph: HDBSCAN through ``fast_hdbscan`` (sparse mutual reachability over the
    precomputed graph), DBSCAN through scikit-learn (sparse precomputed radius graph), and
    average or single linkage in :mod:`facelab.core.linkage` (exact average linkage with
    size-aware merging: see there).

Cannot-link
    Two faces of one photo are two people. ``groups`` (photo id per face) makes average
    linkage refuse any merge that would put two faces of one photo together. For DBSCAN and
    single linkage, which have no merge step to veto, and for HDBSCAN (see
    ``FaceClusterer._hdbscan`` for why not fast_hdbscan's own constraints) it is enforced
    afterwards: per photo the face closest to its cluster's centroid stays, the others
    become noise. That check runs after every method, so the invariant always holds.

Noise
    ``-1`` is "not sure": such faces stay for the user to label one by one, which costs
    little, whereas a wrong merge costs a review. Clusters smaller than ``min_cluster_size``
    become noise under every method.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp

from facelab.core.checks import check_choice, check_float, check_int
from facelab.core.knn import KNN_METHODS, as_unit_rows, knn_csr, knn_graph, top_k_among
from facelab.core.linkage import LINKAGES, graph_linkage
from facelab.errors import ConfigError

__all__ = [
    "FaceClusterer",
    "cluster_faces",
    "cluster_id",
    "cluster_ids",
    "label_members",
    "split_cluster",
    "warm_up",
]

METHODS = ("hdbscan", "dbscan", "agglomerative")
SELECTIONS = ("eom", "leaf")
#: Factor by which :func:`split_cluster` tightens the distance thresholds it is given: 20 %
#: stricter separates two people merged near the threshold without shattering one person.
SPLIT_TIGHTEN = 0.8


# --------------------------------------------------------------------------- validation


def _as_groups(groups: Any, n: int) -> np.ndarray:
    """Photo ids -> compact group ids, -1 for faces alone in their photo (no constraint)."""
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ConfigError(f"groups must hold one photo id per face: shape ({n},), got "
                          f"{g.shape}")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    shared = counts[inv] >= 2
    out = np.full(n, -1, np.int64)
    out[shared] = np.unique(inv[shared], return_inverse=True)[1]
    return out


# --------------------------------------------------------------------------- post-processing


def _centroid_distance(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance of every face to its cluster's normalised mean (NaN for noise), and
    the sum of each cluster's vectors, ``(max label + 1, d)``."""
    out = np.full(x.shape[0], np.nan, np.float32)
    inside = labels >= 0
    n_labels = int(labels.max(initial=-1)) + 1
    sums = np.zeros((n_labels, x.shape[1] if x.ndim == 2 else 0), np.float32)
    if not inside.any():
        return out, sums
    inv = labels[inside]
    ids = np.arange(n_labels)
    if (np.bincount(inv, minlength=n_labels) == 0).any():  # not numbered 0.. without gaps
        ids, inv = np.unique(inv, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(inv.size, np.float32), (inv, np.flatnonzero(inside))),
                           shape=(ids.size, x.shape[0]))
    cent = np.asarray(onehot @ x)
    sums[ids] = cent
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    rows = np.flatnonzero(inside)
    step = 65_536  # rows at a time: never a second copy of every vector
    for lo in range(0, rows.size, step):
        r = rows[lo:lo + step]
        out[r] = 1.0 - np.einsum("ij,ij->i", x[r], cent[inv[lo:lo + step]])
    return out, sums


def _enforce_cannot_link(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per (cluster, photo) keep the face closest to the cluster's centroid; others -> -1."""
    labels = labels.copy()
    sel = np.flatnonzero((labels >= 0) & (groups >= 0))
    if sel.size < 2:
        return labels
    dist = _centroid_distance(x, labels)[0][sel]
    order = np.lexsort((sel, dist, groups[sel], labels[sel]))
    lab_o, grp_o = labels[sel][order], groups[sel][order]
    first = np.r_[True, (lab_o[1:] != lab_o[:-1]) | (grp_o[1:] != grp_o[:-1])]
    labels[sel[order][~first]] = -1
    return labels


def _finalize(labels: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Small clusters -> noise; the rest numbered 0.. by their first member's position, so
    the labelling depends only on the partition and the input order."""
    out = np.full(labels.size, -1, np.int64)
    inside = labels >= 0
    if not inside.any():
        return out
    ids, first, inv, counts = np.unique(labels[inside], return_index=True,
                                        return_inverse=True, return_counts=True)
    keep = counts >= min_cluster_size
    rank = np.full(ids.size, -1, np.int64)
    kept = np.flatnonzero(keep)
    rank[kept[np.argsort(first[kept], kind="stable")]] = np.arange(kept.size)
    out[inside] = rank[inv]
    return out


# --------------------------------------------------------------------------- estimator


class FaceClusterer:
    """Cluster face embeddings on a sparse kNN graph (scikit-learn estimator style).

    Parameters
    ----------
    method : {"hdbscan", "dbscan", "agglomerative"}, default="hdbscan"
        "hdbscan" needs no distance threshold and leaves doubtful faces as noise;
        "agglomerative" (average linkage with size-aware merging) is what the lfw-dev
        research chose for dlib (docs/clustering-quality.md); "dbscan" is the classic.
    min_cluster_size : int >= 2, default=5
        Clusters with fewer faces become noise (all methods), after cannot-link.
    min_samples : int >= 1, default=3
        HDBSCAN: neighbours defining a face's core distance (larger: more conservative).
        DBSCAN: faces (itself included) within ``eps`` that make a face a core face.
    cluster_selection_epsilon : float >= 0, default=0.0
        HDBSCAN: clusters closer than this cosine distance are not split further.
    cluster_selection_method : {"eom", "leaf"}, default="eom"
        HDBSCAN: "eom" picks the most persistent clusters, "leaf" the finest ones.
    eps : float in (0, 2], default=0.5
        DBSCAN: cosine distance within which faces are neighbours (ArcFace scale; dlib's
        faces of one person are ~0.05 apart).
    distance_threshold : float in (0, 2], default=0.5
        Agglomerative: largest linkage distance of a merge (ArcFace scale by default).
    linkage : {"average", "single"}, default="average"
        Agglomerative: "average" compares all pairs of two clusters (exact, via sums);
        "single" chains faces closer than the threshold (fast, but one bridge merges two
        people).
    pair_threshold : float in (0, 2] or None, default=None
        Average linkage: largest distance at which two lone faces pair up; None = the
        distance threshold. Lower is safer: lookalike strangers pair up, people recur.
    size_exponent : float > 0 or None, default=None
        Average linkage: for clusters of a and b faces the merge limit is
        ``distance_threshold - (distance_threshold - pair_threshold) * (a b) ** -size_exponent``,
        rising from the pair limit towards the full threshold as evidence accumulates; None
        = the full threshold for everything but two lone faces.
    max_separation : float >= 0 or None, default=None
        Average linkage: largest squared distance between two clusters' means beyond what
        sampling noise explains; None = no such test.
    separation_noise : float >= 0, default=0.0
        Average linkage: the noise allowance per ``1/|A| + 1/|B|`` in that test (about
        twice the within-person spread, i.e. twice a genuine pair's mean distance).
    k : int >= 2, default=30
        Neighbours per face in the graph; bounds memory (O(n k)) and must cover min_samples.
    exact : bool or None, default=None
        kNN search: None = exact up to :data:`~facelab.core.knn.EXACT_MAX` faces,
        approximate above.
    knn_method : {"ivf", "usearch"}, default="ivf"
        Approximate kNN search (:func:`knn_graph`).
    random_state : int, default=0
        Seed of the approximate kNN search.

    Attributes
    ----------
    labels_ : int64 array (n,)
        Cluster per face, -1 = noise; clusters numbered by their first face's position.
    n_clusters_ : int
    centroid_distance_ : float32 array (n,)
        Cosine distance of each face to its cluster's mean (NaN for noise): the evidence to
        record with each membership.
    sums_ : float32 array (n_clusters_, d)
        The sum of each cluster's unit vectors: what an incremental pass measures new faces
        against (:mod:`facelab.store.cluster_cache`).
    timings_ : dict
        Seconds spent on the kNN graph and on clustering.
    """

    def __init__(self, *, method: str = "hdbscan", min_cluster_size: int = 5,
                 min_samples: int = 3, cluster_selection_epsilon: float = 0.0,
                 cluster_selection_method: str = "eom", eps: float = 0.5,
                 distance_threshold: float = 0.5, linkage: str = "average",
                 pair_threshold: float | None = None, size_exponent: float | None = None,
                 max_separation: float | None = None, separation_noise: float = 0.0,
                 k: int = 30, exact: bool | None = None, knn_method: str = "ivf",
                 random_state: int = 0) -> None:
        self.method = method
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.eps = eps
        self.distance_threshold = distance_threshold
        self.linkage = linkage
        self.pair_threshold = pair_threshold
        self.size_exponent = size_exponent
        self.max_separation = max_separation
        self.separation_noise = separation_noise
        self.k = k
        self.exact = exact
        self.knn_method = knn_method
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def _validate(self) -> None:
        """Every range, checked once per fit, each error naming its argument."""
        check_choice("method", self.method, METHODS)
        check_int("min_cluster_size", self.min_cluster_size, 2, 10_000_000)
        check_int("min_samples", self.min_samples, 1, 1000)
        check_float("cluster_selection_epsilon", self.cluster_selection_epsilon, 0.0, 2.0)
        check_choice("cluster_selection_method", self.cluster_selection_method, SELECTIONS)
        check_float("eps", self.eps, 0.0, 2.0, low_open=True)
        check_float("distance_threshold", self.distance_threshold, 0.0, 2.0, low_open=True)
        check_choice("linkage", self.linkage, LINKAGES)
        if self.pair_threshold is not None:
            check_float("pair_threshold", self.pair_threshold, 0.0, 2.0, low_open=True)
        if self.size_exponent is not None:
            check_float("size_exponent", self.size_exponent, 0.0, 10.0, low_open=True)
        if self.max_separation is not None:
            check_float("max_separation", self.max_separation, 0.0, 4.0)
        check_float("separation_noise", self.separation_noise, 0.0, 100.0)
        check_int("k", self.k, 2, 1000)
        if self.method in ("hdbscan", "dbscan") and self.k < self.min_samples:
            raise ConfigError(f"k={self.k} must be >= min_samples={self.min_samples}: core "
                              "distances need that many neighbours in the graph")
        if self.exact is not None and not isinstance(self.exact, bool | np.bool_):
            raise ConfigError(f"exact={self.exact!r} must be True, False or None")
        check_choice("knn_method", self.knn_method, KNN_METHODS)
        check_int("random_state", self.random_state, 0)

    def fit(self, X: np.ndarray, y: None = None, *, groups: np.ndarray | None = None
            ) -> FaceClusterer:
        """Cluster the rows of ``X``.

        Parameters
        ----------
        X : array (n, d)
            Face embeddings of one space (any positive scale; compared by cosine).
        y : ignored
            For scikit-learn compatibility.
        groups : array (n,) or None
            Photo id of each face: faces of one photo never share a cluster.
        """
        self._validate()
        x = as_unit_rows(X)
        n = x.shape[0]
        g = _as_groups(groups, n) if groups is not None else np.full(n, -1, np.int64)
        t0 = time.perf_counter()
        if n < 2:
            self._store(x, np.full(n, -1, np.int64), g, 0.0, 0.0)
            return self
        nbrs, dists = knn_graph(x, self.k, exact=self.exact, method=self.knn_method,
                                seed=self.random_state)
        graph = knn_csr(nbrs, dists)
        del nbrs, dists
        t1 = time.perf_counter()
        if self.method == "hdbscan":
            raw = self._hdbscan(graph)
        elif self.method == "dbscan":
            raw = self._dbscan(graph)
        else:
            raw = graph_linkage(x, graph, self.distance_threshold, linkage=self.linkage,
                                pair_threshold=self.pair_threshold,
                                size_exponent=self.size_exponent,
                                max_separation=self.max_separation,
                                separation_noise=self.separation_noise, groups=g)
        self._store(x, raw, g, t1 - t0, time.perf_counter() - t1)
        return self

    def _store(self, x: np.ndarray, raw: np.ndarray, groups: np.ndarray, t_knn: float,
               t_cluster: float) -> None:
        labels = _finalize(raw, 2)  # a cluster of one face is noise
        if (groups >= 0).any():
            labels = _enforce_cannot_link(x, labels, groups)
        labels = _finalize(labels, self.min_cluster_size)
        self.labels_ = labels
        self.n_clusters_ = int(labels.max()) + 1 if labels.size else 0
        self.centroid_distance_, self.sums_ = _centroid_distance(x, labels)
        self.timings_ = {"knn_s": t_knn, "cluster_s": t_cluster}

    def _hdbscan(self, graph: sp.csr_matrix) -> np.ndarray:
        # Cannot-link is enforced afterwards, not by fast_hdbscan's own constraints: those
        # leave a spanning forest whose trees hang off the root at lambda 0, where EOM's
        # stability always prefers a whole tree, several people at once (measured on
        # 100 000 synthetic faces in photos of 1-4 faces: pairwise F 0.99 -> 0.31).
        # Imported here: ~1.5 s (numba, scikit-learn) that only this method needs.
        from fast_hdbscan import HDBSCAN

        model = HDBSCAN(metric="precomputed", min_cluster_size=int(self.min_cluster_size),
                        min_samples=int(self.min_samples),
                        cluster_selection_method=self.cluster_selection_method,
                        cluster_selection_epsilon=float(self.cluster_selection_epsilon))
        return np.asarray(model.fit(graph).labels_, np.int64)

    def _dbscan(self, graph: sp.csr_matrix) -> np.ndarray:
        from sklearn.cluster import DBSCAN  # here: ~1.5 s of import only DBSCAN needs

        radius = graph.copy()
        radius.data[radius.data > self.eps] = 0.0
        radius.eliminate_zeros()
        model = DBSCAN(eps=float(self.eps), min_samples=int(self.min_samples),
                       metric="precomputed")
        return np.asarray(model.fit(radius).labels_, np.int64)

    def fit_predict(self, X: np.ndarray, y: None = None, *,
                    groups: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fit`, then ``labels_``."""
        return self.fit(X, groups=groups).labels_

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _DEFAULTS[k]}
        return f"FaceClusterer({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


_PARAM_NAMES = ("method", "min_cluster_size", "min_samples", "cluster_selection_epsilon",
                "cluster_selection_method", "eps", "distance_threshold", "linkage",
                "pair_threshold", "size_exponent", "max_separation", "separation_noise", "k",
                "exact",
                "knn_method", "random_state")
_DEFAULTS = FaceClusterer().get_params()


def cluster_faces(X: np.ndarray, *, groups: np.ndarray | None = None,
                  **params: Any) -> np.ndarray:
    """Cluster labels of the rows of ``X`` (-1 = noise): ``FaceClusterer(**params)``, fitted.

    A thin wrapper in the manner of scikit-learn's ``dbscan()``; see :class:`FaceClusterer`
    for the parameters, and ``settings.resolve(space).cluster_params()`` for a space's
    researched defaults.
    """
    return FaceClusterer(**params).fit(X, groups=groups).labels_


def split_cluster(X: np.ndarray, *, groups: np.ndarray | None = None,
                  tighten: float = SPLIT_TIGHTEN, **params: Any) -> np.ndarray:
    """Sub-clusters of one cluster's faces, found with tighter parameters.

    A cluster that merged two people is re-clustered on its own members. Both halves of a
    wrong merge passed the looser test once, so ``params`` (those the cluster was found
    with, e.g. ``settings.resolve(space).cluster_params()``) are tightened: the distance thresholds
    (``distance_threshold``, ``pair_threshold``, ``eps``, ``max_separation``) are
    multiplied by ``tighten`` and ``min_cluster_size`` is halved (at least 2). HDBSCAN never
    returns its whole input as one cluster, so it splits wherever the density has
    structure. Pass ``tighten=1.0`` to use ``params`` exactly as given.

    Returns
    -------
    int64 array (n,): sub-cluster per face, -1 = fits no sub-cluster.
    """
    check_float("tighten", tighten, 0.0, 1.0, low_open=True)
    params = {**_DEFAULTS, **params}
    for name in ("distance_threshold", "pair_threshold", "eps", "max_separation"):
        if params[name] is not None:
            params[name] = params[name] * tighten
    if tighten < 1.0:
        params["min_cluster_size"] = max(2, int(params["min_cluster_size"]) // 2)
    return FaceClusterer(**params).fit(X, groups=groups).labels_


def label_members(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(label, positions)`` of every label >= 0, ascending, in one sort: O(n log n).

    A mask per label (``labels == lab`` in a loop) costs O(n x clusters): at 300 000 faces
    in 22 000 clusters that is 6.6 billion comparisons, longer than the clustering."""
    labels = np.asarray(labels)
    pos = np.flatnonzero(labels >= 0)
    if pos.size == 0:
        return
    pos = pos[np.argsort(labels[pos], kind="stable")]
    lab = labels[pos]
    cuts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1], True])
    for lo, hi in pairwise(cuts.tolist()):
        yield int(lab[lo]), pos[lo:hi]


def cluster_id(member_face_ids: np.ndarray) -> str:
    """Content-addressed cluster id: "c" + 12 hex digits of blake2b of the sorted ids.

    The same membership always gets the same id, whatever the order of the faces or the
    run that found it, so the catalog can tell a re-found cluster (same id: keep its
    review state) from a changed one (new id).

    Parameters
    ----------
    member_face_ids : sequence of int
        The face ids of the cluster's members (distinct).
    """
    ids = np.asarray(member_face_ids)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError("member_face_ids must be a non-empty 1-d sequence of integer face "
                          f"ids, got {ids.dtype} of shape {ids.shape}")
    ids = np.sort(ids.astype("<i8"))
    if (ids[1:] == ids[:-1]).any():
        raise ConfigError("member_face_ids holds duplicates; a face is in a cluster once")
    return "c" + hashlib.blake2b(ids.tobytes()).hexdigest()[:12]


def cluster_ids(face_ids: np.ndarray, labels: np.ndarray) -> dict[int, str]:
    """``{label: cluster_id(members)}`` for every label >= 0 of ``labels`` (one per face of
    ``face_ids``), in one sort: a call of :func:`cluster_id` per cluster took 2 s for the
    70 000 clusters of a million faces."""
    f = np.asarray(face_ids).astype("<i8")
    lab = np.asarray(labels, np.int64)
    if f.shape != lab.shape or f.ndim != 1:
        raise ConfigError(f"face_ids {f.shape} and labels {lab.shape} must be one label per "
                          "face")
    inside = lab >= 0
    f, lab = f[inside], lab[inside]
    if f.size == 0:
        return {}
    order = np.lexsort((f, lab))
    f, lab = f[order], lab[order]
    if ((f[1:] == f[:-1]) & (lab[1:] == lab[:-1])).any():
        raise ConfigError("face_ids holds duplicates within a cluster; a face is in a "
                          "cluster once")
    cuts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1], True]).tolist()
    raw = memoryview(f.tobytes())
    return {int(lab[lo]): "c" + hashlib.blake2b(raw[lo * 8:hi * 8]).hexdigest()[:12]
            for lo, hi in pairwise(cuts)}


def warm_up() -> threading.Thread:
    """Load, in a background thread, the compiled kernels a clustering calls (exact top-k
    and average linkage) and return that thread; the caller goes on meanwhile.

    numba's first call in a process initialises its compiler and loads each function's
    cached machine code: 0.3-0.4 s, a third of an incremental pass that places 1 000 faces
    in a library of 300 000, spent while the pass waits. Started before the pass reads the
    catalog, it overlaps those reads; a kernel the pass reaches first is simply loaded there
    (numba's compiler lock orders the two)."""

    def load() -> None:
        x = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
        top_k_among(x[:4], x, 3)
        FaceClusterer(method="agglomerative", k=4).fit(x, groups=np.arange(16))

    thread = threading.Thread(target=load, name="facelab-warm-up", daemon=True)
    thread.start()
    return thread
