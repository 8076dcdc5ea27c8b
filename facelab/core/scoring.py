"""The one prototype scorer: faces against every person's prototypes, best person and evidence.

Assignment (``people.assign``), suggestions (``people.suggest``), calibration
(``research.calibrate``), the simulator and training all decide "who is this face" here, so
what calibration measures is exactly what ``assign`` then does.

A face's score for a person is the **max** cosine over that person's prototypes, not the
mean: a person's prototypes deliberately cover different modes (frontal/profile,
child/adult), and a face that matches one mode well is that person even if it matches the
others poorly; a mean would drag exactly those faces below the threshold.

Pure NumPy, no I/O. Faces are scored in chunks of ``chunk`` rows, so memory is
O(chunk x prototypes) whatever the number of faces, never faces x faces. Ties are broken
the same way everywhere: prototypes are grouped by person with a stable sort, the first
(lowest id) best person wins, and within it the first best prototype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facelab.core.linalg import unit
from facelab.errors import ConfigError

__all__ = ["SCORE_CHUNK", "Scores", "one_per_photo", "score_faces", "tiers"]

#: Faces scored at once: memory = chunk x prototypes float32.
SCORE_CHUNK = 2048


@dataclass
class Scores:
    """Per face (n rows): who it matches best, by how much, and against what.

    ``person`` int64, -1 when no person is eligible; ``score`` float32, -inf then;
    ``second`` / ``second_person``: the runner-up (best score of any *other* person, -inf /
    -1 when there is none) — ``score - second`` says how ambiguous the face is;
    ``prototype``: face id (``proto_face``) of the winner's best prototype, -1 when none;
    ``proto_index`` (n, k) / ``proto_score`` (n, k): with ``top_k``, indices into the
    prototype arrays of the winner's best ``k`` prototypes, best first (-1 / NaN padded);
    ``stranger``: with ``own_person``, the best score of any person other than the face's
    own — the face scored as if its person were unknown (-inf otherwise).
    """

    person: np.ndarray
    score: np.ndarray
    second: np.ndarray
    second_person: np.ndarray
    prototype: np.ndarray
    proto_index: np.ndarray
    proto_score: np.ndarray
    stranger: np.ndarray

    def __len__(self) -> int:
        return int(self.person.size)


def score_faces(vectors: np.ndarray, proto_person: np.ndarray, proto_face: np.ndarray | None,
                proto_vectors: np.ndarray, *, face_ids: np.ndarray | None = None,
                rejected: set[tuple[int, int]] | None = None, exclude_own: bool = False,
                own_person: np.ndarray | None = None, own_score: np.ndarray | None = None,
                top_k: int = 0, chunk: int = SCORE_CHUNK, normalize: bool = True) -> Scores:
    """Best person per face by max cosine over each person's prototypes.

    Parameters
    ----------
    vectors : (n, d) face embeddings (normalised here unless ``normalize=False``).
    proto_person : (m,) the person of each prototype; a person may have any number.
    proto_face : (m,) the face id of each prototype (reported in ``Scores.prototype`` and
        used by ``exclude_own``), or None (``prototype`` is then -1).
    proto_vectors : (m, d) prototype embeddings.
    face_ids : (n,) face ids, needed by ``rejected`` and ``exclude_own``.
    rejected : (face id, person id) pairs a person rejected: that person is never the match
        of that face, which falls back to its next-best person.
    exclude_own : a face never matches a prototype that is itself (leave-one-out scoring of
        labelled faces, where every prototype is also a face being scored).
    own_person, own_score : (n,) each face's own person and its score for that person
        computed elsewhere without the face (calibration re-chooses the person's prototypes
        without it): that score replaces the person's column, and ``Scores.stranger`` gets
        the best score of any other person. A face whose own person has no prototypes keeps
        its row as it is.
    top_k : how many of the winner's per-prototype scores to return in ``proto_index`` /
        ``proto_score`` (evidence); ``k = min(top_k, most prototypes of any person)``.
    chunk : faces scored at once; memory is O(chunk x m).
    normalize : False when both inputs are unit rows already (skips a renormalisation
        that could move the last bit).
    """
    x = np.asarray(vectors, np.float32)
    if x.ndim == 1:  # one face
        x = x.reshape(1, -1) if x.size else x.reshape(0, 0)
    pids = np.asarray(proto_person, np.int64).ravel()
    n, m = x.shape[0], pids.shape[0]
    pv = np.asarray(proto_vectors, np.float32)
    pv = np.atleast_2d(pv) if pv.size else pv.reshape(0, x.shape[1])
    if pv.shape[0] != m:
        raise ConfigError(f"proto_person has {m} entries but proto_vectors has "
                          f"{pv.shape[0]} rows; give one person id per prototype")
    if m and n and pv.shape[1] != x.shape[1]:
        raise ConfigError(f"vectors are {x.shape[1]}-d but prototypes are {pv.shape[1]}-d; "
                          "score faces against prototypes of the same embedding space")
    if top_k < 0 or chunk < 1:
        raise ConfigError(f"top_k={top_k} must be >= 0 and chunk={chunk} >= 1")
    if exclude_own and (face_ids is None or proto_face is None):
        raise ConfigError("exclude_own needs face_ids and proto_face to tell a face's own "
                          "prototype")
    if (own_person is None) != (own_score is None):
        raise ConfigError("own_person and own_score go together")
    faces = None if face_ids is None else np.asarray(face_ids, np.int64).ravel()
    if n == 0 or m == 0:
        return _empty(n, 0)
    order = np.argsort(pids, kind="stable")                  # prototypes grouped by person
    p_person = pids[order]
    p_face = (np.full(m, -1, np.int64) if proto_face is None
              else np.asarray(proto_face, np.int64).ravel()[order])
    p = unit(pv[order]) if normalize else pv[order]
    q = unit(x) if normalize else x
    persons, starts, counts = np.unique(p_person, return_index=True, return_counts=True)
    widest = int(counts.max())
    k = min(top_k, widest)
    out = _empty(n, k)
    col_of = {int(pid): j for j, pid in enumerate(persons)}
    banned: dict[int, list[int]] = {}
    for f, pid in rejected or ():
        if pid in col_of:
            banned.setdefault(int(f), []).append(col_of[pid])
    own_col = None
    if own_person is not None:
        op = np.asarray(own_person, np.int64).ravel()
        pos = np.clip(np.searchsorted(persons, op), 0, len(persons) - 1)
        own_col = np.where(persons[pos] == op, pos, -1)
        own_val = np.asarray(own_score, np.float32).ravel()
    span = np.arange(widest)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        rows = np.arange(hi - lo)
        sims = q[lo:hi] @ p.T                                   # (chunk, prototypes)
        if exclude_own:
            sims[faces[lo:hi, None] == p_face[None, :]] = -np.inf
        per_person = np.maximum.reduceat(sims, starts, axis=1)  # (chunk, persons)
        if banned and faces is not None:
            for r, fid in enumerate(faces[lo:hi]):
                cols = banned.get(int(fid))
                if cols:
                    per_person[r, cols] = -np.inf
        has = None
        if own_col is not None:
            oc = own_col[lo:hi]
            has = oc >= 0
            per_person[rows[has], oc[has]] = own_val[lo:hi][has]
        best = np.argmax(per_person, axis=1)
        score = per_person[rows, best]
        ok = np.isfinite(score)
        out.score[lo:hi] = score
        out.person[lo:hi] = np.where(ok, persons[best], -1)
        if len(persons) > 1:
            runner = per_person.copy()
            runner[rows, best] = -np.inf
            second = np.argmax(runner, axis=1)
            out.second[lo:hi] = runner[rows, second]
            out.second_person[lo:hi] = np.where(np.isfinite(out.second[lo:hi]),
                                                persons[second], -1)
        if has is not None:
            per_person[rows[has], oc[has]] = -np.inf
            out.stranger[lo:hi] = per_person.max(axis=1)
        # the winner's own prototypes: columns starts[best] .. starts[best] + counts[best]
        cols = starts[best][:, None] + span[None, :]
        valid = span[None, :] < counts[best][:, None]
        cols = np.where(valid, cols, 0)
        mine = np.where(valid, np.take_along_axis(sims, cols, axis=1), -np.inf)
        first = np.argmax(mine, axis=1)
        matched = np.isfinite(mine[rows, first]) & ok
        out.prototype[lo:hi] = np.where(matched, p_face[cols[rows, first]], -1)
        if k:
            top = np.argsort(-mine, axis=1, kind="stable")[:, :k]
            top_scores = np.take_along_axis(mine, top, axis=1)
            top_valid = np.isfinite(top_scores)
            out.proto_index[lo:hi] = np.where(top_valid,
                                              order[np.take_along_axis(cols, top, 1)], -1)
            out.proto_score[lo:hi] = np.where(top_valid, top_scores, np.nan)
    return out


def _empty(n: int, k: int) -> Scores:
    return Scores(np.full(n, -1, np.int64), np.full(n, -np.inf, np.float32),
                  np.full(n, -np.inf, np.float32), np.full(n, -1, np.int64),
                  np.full(n, -1, np.int64), np.full((n, k), -1, np.int64),
                  np.full((n, k), np.nan, np.float32), np.full(n, -np.inf, np.float32))


def tiers(scores: np.ndarray, *, auto: float, suggest: float) -> np.ndarray:
    """'auto' at or above ``auto``, 'suggest' in [suggest, auto), '' below (cluster later)."""
    scores = np.asarray(scores)
    out = np.full(len(scores), "", dtype=object)
    out[scores >= suggest] = "suggest"
    out[scores >= auto] = "auto"
    return out


def one_per_photo(assets: np.ndarray, persons: np.ndarray, scores: np.ndarray,
                  tier: np.ndarray, taken: set[tuple[int, int]] | None = None) -> np.ndarray:
    """Demote to 'suggest' every auto face whose photo already shows that person.

    Two faces in one photo are rarely the same person. Within a photo, the highest-scoring
    face keeps 'auto' for a person; ``taken`` holds (asset, person) pairs already assigned in
    the catalog, which demote all candidates.
    """
    tier = tier.copy()
    taken = set(taken or ())
    auto_idx = np.flatnonzero(tier == "auto")
    for i in auto_idx[np.argsort(-scores[auto_idx], kind="stable")]:
        key = (int(assets[i]), int(persons[i]))
        if key in taken:
            tier[i] = "suggest"
        else:
            taken.add(key)
    return tier
