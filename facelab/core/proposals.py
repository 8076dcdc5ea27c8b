"""Who is this? Rank people for faces (and groups of faces) from their nearest named faces.

The scorer behind facelab's proposals (:mod:`facelab.people.propose`): a face's score for a
person is its cosine to the person's **nearest named face** among the face's ``k`` nearest
named faces — the "max over all faces" scorer, which on fgnet-dev (people from infancy to
old age) puts the right person first for 93-94 % of faces left out one at a time, ahead of
5-year era prototypes (92 %) and one centroid per person (91-94 %; docs/growing-up.md).
A child's face is matched by the person's faces of that age when there are any, because
those are the nearest; an adult's by the adult faces. Restricting the evidence to faces
taken within a few years (``year_window``) is offered and measured, not the default: on
fgnet-dev it moved top-1 by -2 to +1 faces.

A group's (a cluster's) score for a person is the mean over its faces of the face's score
for that person; a face whose ``k`` neighbours hold none of the person's faces contributes
its weakest neighbour's similarity, an upper bound of its true score.

Pure NumPy, no I/O. Inputs are the ``(q, k)`` neighbour tables a vector search returns, so
memory is O(q x k), never faces x faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facelab.errors import ConfigError

__all__ = ["GroupRanking", "Ranking", "rank_groups", "rank_people"]


@dataclass(frozen=True)
class Ranking:
    """Every (query, person) pair seen among the queries' neighbours, best person first
    within each query.

    ``row``: query index; ``person``; ``score``: the similarity to the person's best
    neighbour (within ``year_window`` when it had one there); ``col``: that neighbour's
    column in the neighbour table; ``rank``: 0 for the query's best person, 1 for the
    runner-up, ... Sorted by row, then rank.
    """

    row: np.ndarray     # int64 (m,)
    person: np.ndarray  # int64 (m,)
    score: np.ndarray   # float32 (m,)
    col: np.ndarray     # int64 (m,)
    rank: np.ndarray    # int64 (m,)

    def top(self, n_queries: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query, its person of ``rank`` (0 = best): ``(person, score, col)``, with
        ``-1``, ``-inf``, ``-1`` for a query that has no such person."""
        person = np.full(n_queries, -1, np.int64)
        score = np.full(n_queries, -np.inf, np.float32)
        col = np.full(n_queries, -1, np.int64)
        at = self.rank == rank
        person[self.row[at]] = self.person[at]
        score[self.row[at]] = self.score[at]
        col[self.row[at]] = self.col[at]
        return person, score, col


def _check_table(nb_person: np.ndarray, nb_sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    person = np.asarray(nb_person, np.int64)
    sims = np.asarray(nb_sims, np.float32)
    if person.ndim != 2 or person.shape != sims.shape:
        raise ConfigError(f"neighbour persons and similarities must be (q, k) of one shape; "
                          f"got {person.shape} and {sims.shape}")
    return person, sims


def rank_people(nb_person: np.ndarray, nb_sims: np.ndarray, *,
                nb_years: np.ndarray | None = None, query_years: np.ndarray | None = None,
                year_window: int = 0, exclude: np.ndarray | None = None) -> Ranking:
    """Rank the people among each query's neighbours by their best neighbour.

    Parameters
    ----------
    nb_person : int array (q, k)
        The person of each neighbour; ``-1`` for an empty slot (fewer named faces than k).
    nb_sims : float array (q, k)
        Cosine similarity of each neighbour to its query.
    nb_years, query_years : int arrays (q, k) and (q,), optional
        Capture years (``-1`` unknown), for ``year_window``.
    year_window : int, default 0
        > 0: a person's score comes from its neighbours taken at most this many years from
        the query when it has any, else from all of them. 0: from all of them.
    exclude : int array (e, 2), optional
        ``(query index, person)`` pairs never ranked: rejected by a person, or a person
        already on the query's photo.
    """
    person, sims = _check_table(nb_person, nb_sims)
    q, k = person.shape
    if year_window < 0:
        raise ConfigError(f"year_window={year_window} must be >= 0")
    rows = np.repeat(np.arange(q, dtype=np.int64), k)
    cols = np.tile(np.arange(k, dtype=np.int64), q)
    p, s = person.ravel(), sims.ravel()
    near = np.zeros(q * k, bool)
    if year_window > 0 and nb_years is not None and query_years is not None:
        ny = np.asarray(nb_years, np.int64).ravel()
        qy = np.repeat(np.asarray(query_years, np.int64), k)
        near = (ny >= 0) & (qy >= 0) & (np.abs(ny - qy) <= year_window)
    keep = (p >= 0) & np.isfinite(s)
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, np.int64).reshape(-1, 2)
        width = int(max(p.max(initial=0), ex[:, 1].max(initial=0))) + 1
        keep &= ~np.isin(rows * width + p, ex[:, 0] * width + ex[:, 1])
    rows, cols, p, s, near = rows[keep], cols[keep], p[keep], s[keep], near[keep]
    # best neighbour per (row, person): in-window first, then the highest similarity
    order = np.lexsort((cols, -s, ~near, p, rows))
    rows, cols, p, s = rows[order], cols[order], p[order], s[order]
    first = np.ones(rows.size, bool)
    first[1:] = (rows[1:] != rows[:-1]) | (p[1:] != p[:-1])
    rows, cols, p, s = rows[first], cols[first], p[first], s[first]
    # best person first within each row (ties: the lower person id)
    order = np.lexsort((p, -s, rows))
    rows, cols, p, s = rows[order], cols[order], p[order], s[order]
    start = np.ones(rows.size, bool)
    start[1:] = rows[1:] != rows[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(rows.size), 0))
    rank = np.arange(rows.size) - run_start
    return Ranking(rows, p, s.astype(np.float32), cols, rank.astype(np.int64))


@dataclass(frozen=True)
class GroupRanking:
    """Per group, its best person and the runner-up: ``person`` / ``score`` (mean over the
    group's faces), ``second_person`` / ``second`` (-1 / -inf when none), ``support``:
    how many of the group's faces have the best person among their neighbours."""

    person: np.ndarray         # int64 (g,)
    score: np.ndarray          # float32 (g,)
    second_person: np.ndarray  # int64 (g,)
    second: np.ndarray         # float32 (g,)
    support: np.ndarray        # int64 (g,)


def rank_groups(ranking: Ranking, floor: np.ndarray, group: np.ndarray, n_groups: int, *,
                exclude: np.ndarray | None = None) -> GroupRanking:
    """Rank people for groups of queries (clusters) from a per-face :class:`Ranking`.

    ``floor`` (q,): each query's weakest neighbour similarity, what a face whose neighbours
    hold none of a person's faces contributes for that person. ``group`` (q,): each query's
    group index in ``[0, n_groups)``. ``exclude``: ``(group, person)`` pairs never ranked
    (a proposal the user rejected).
    """
    group = np.asarray(group, np.int64)
    floor = np.asarray(floor, np.float32)
    if group.shape != floor.shape or (group.size and (group.min() < 0
                                                       or group.max() >= n_groups)):
        raise ConfigError("group must give each query a group index in [0, n_groups)")
    size = np.bincount(group, minlength=n_groups).astype(np.float64)
    floor_sum = np.bincount(group, weights=floor, minlength=n_groups)
    g = group[ranking.row]
    width = int(ranking.person.max(initial=0)) + 1
    key = g * width + ranking.person
    keys, inv = np.unique(key, return_inverse=True)
    found = np.bincount(inv, weights=ranking.score.astype(np.float64))
    found_floor = np.bincount(inv, weights=floor[ranking.row].astype(np.float64))
    support = np.bincount(inv)
    kg, kp = keys // width, keys % width
    score = (found + floor_sum[kg] - found_floor) / size[kg]
    keep = np.ones(keys.size, bool)
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, np.int64).reshape(-1, 2)
        keep = ~np.isin(keys, ex[:, 0] * width + ex[:, 1])
    kg, kp, score, support = kg[keep], kp[keep], score[keep], support[keep]
    order = np.lexsort((kp, -score, kg))
    kg, kp, score, support = kg[order], kp[order], score[order], support[order]
    start = np.ones(kg.size, bool)
    start[1:] = kg[1:] != kg[:-1]
    second_at = np.zeros(kg.size, bool)
    second_at[1:] = start[:-1] & ~start[1:]
    out_p = np.full(n_groups, -1, np.int64)
    out_s = np.full(n_groups, -np.inf, np.float32)
    out_p2 = np.full(n_groups, -1, np.int64)
    out_s2 = np.full(n_groups, -np.inf, np.float32)
    out_n = np.zeros(n_groups, np.int64)
    out_p[kg[start]], out_s[kg[start]], out_n[kg[start]] = kp[start], score[start], \
        support[start]
    out_p2[kg[second_at]], out_s2[kg[second_at]] = kp[second_at], score[second_at]
    return GroupRanking(out_p, out_s, out_p2, out_s2, out_n)
