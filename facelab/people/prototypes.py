"""Prototypes: the few faces of a person that unknown faces are compared with.

Comparing a new face with every face of every person is slow and lets one mislabeled face
attract strangers; comparing with one centroid misses the person's unusual looks. A person
therefore keeps a handful of *prototype* faces, each with a role:

* ``exemplar``: the best faces by quality (``max_exemplars``, default 3, the original
  system's choice), skipping near-duplicates (the same photo twice, a burst) because a
  second copy of the same face adds a comparison but no coverage.
* ``centroid``: the real face nearest the person's robust centroid: the most *typical* face,
  which the best-quality faces (often posed, well lit) need not be.
* ``temporal``: when photo dates are known and a person spans several eras (5-year bins,
  e.g. ``2010-2014``), the best face of each era, so a child's face still matches the child
  in older photos after the adult's faces dominate the exemplars.

A user can *pin* a face as a prototype; pinned prototypes survive every refresh. Refreshes
replace the unpinned ones. A prototype is only used while its face still belongs to its
person (:func:`prototypes_of` checks), so moving a wrong face away also retires it as a
prototype without any bookkeeping, and undoing the move brings it back.

The choice itself is pure (:mod:`facelab.core.prototypes`); the rows live in
:mod:`facelab.store.prototypes`. This module decides when and for whom to choose.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb

from facelab.core.prototypes import ROLES, choose_prototypes, era_of
from facelab.errors import FacelabError
from facelab.settings import Settings
from facelab.store import prototypes as store
from facelab.store.catalog import Catalog
from facelab.store.faces import labeled_face_vectors
from facelab.store.prototypes import PrototypeSet


def refresh_in(con: duckdb.DuckDBPyConnection, person_id: int, space: str,
               settings: Settings | None = None) -> list[dict[str, Any]]:
    """:func:`refresh_prototypes` inside the caller's open transaction ``con`` (a label or
    an assignment refreshes the prototypes it changed in the same transaction)."""
    s = settings if settings is not None else Settings.from_env()
    person_id = int(person_id)
    faces = labeled_face_vectors(con, space, person_id=person_id)
    pinned = store.pinned_prototypes(con, person_id, space)
    store.delete_unpinned(con, person_id, space)
    new = choose_prototypes(faces.face_ids, faces.vectors, faces.quality, faces.years,
                            [(p.face_id, p.role, p.era) for p in pinned], s)
    store.add_prototypes(con, person_id, space, new)
    return store.prototype_rows(con, person_id, space)


def refresh_prototypes(catalog: Catalog, person_id: int, space: str,
                       settings: Settings | None = None) -> list[dict[str, Any]]:
    """Re-choose a person's unpinned prototypes in ``space``; return all of them.

    Pinned prototypes are kept untouched. Exemplars: pinned exemplars fill
    ``max_exemplars`` slots first, :func:`~facelab.core.prototypes.select_exemplars` fills
    the rest (never a copy of a pinned face). One ``centroid`` prototype (unless one is
    pinned): the face of quality >= ``prototype_min_quality`` nearest the robust centroid of
    all the person's faces. ``temporal`` prototypes:
    :func:`~facelab.core.prototypes.select_temporal` over the photos' ``taken_at``, except
    for eras a pinned temporal prototype covers. A person without faces in the space keeps
    only pinned prototypes. One transaction.

    Rows are dicts with keys ``prototype_id, person_id, face_id, space, role, pinned,
    quality, era``. ``settings`` None: the defaults with any ``FACELAB_*`` variables.
    """
    with catalog.write() as con:
        return refresh_in(con, person_id, space, settings)


def pin(catalog: Catalog, person_id: int, face_id: int, space: str,
        role: str = "exemplar") -> int:
    """Pin ``face_id`` as a ``role`` prototype of ``person_id``; return the prototype id.

    The face must currently belong to the person and have a vector in ``space``. An existing
    prototype row of that face and role is pinned in place; otherwise one is added (a pinned
    temporal prototype gets the era of its photo's date).
    """
    if role not in ROLES:
        raise FacelabError(f"role={role!r} must be one of {', '.join(ROLES)}")
    with catalog.write() as con:
        target = store.pin_target(con, face_id, space)
        if target is None:
            raise FacelabError(f"face {face_id} does not exist")
        if target.person_id != int(person_id):
            raise FacelabError(f"face {face_id} belongs to person {target.person_id}, not "
                               f"{person_id}; move it first, then pin it")
        if not target.has_vector:
            raise FacelabError(f"face {face_id} has no vector in space {space!r}")
        era = era_of(target.year) if role == "temporal" and target.year is not None else None
        found = store.pin_existing(con, person_id, face_id, space, role)
        if found is not None:
            return found
        return store.add_pinned(con, person_id, face_id, space, role, target.quality, era)


def unpin(catalog: Catalog, person_id: int, face_id: int, space: str,
          role: str | None = None) -> int:
    """Unpin ``face_id``'s prototypes of ``person_id`` (one ``role``, or all when None).

    The rows stay until the next refresh, which may or may not choose the face again.
    Returns the number of prototypes unpinned.
    """
    with catalog.write() as con:
        return store.unpin(con, person_id, face_id, space, role)


def prototypes_of(catalog: Catalog, space: str, person_ids: Iterable[int] | None = None, *,
                  con: duckdb.DuckDBPyConnection | None = None) -> PrototypeSet:
    """Every usable prototype of ``space``: ``(person_ids, face_ids, roles, vectors, quality)``.

    Shapes ``(m,)`` int64, ``(m,)`` int64, ``(m,)`` str, ``(m, dim)`` float32, ``(m,)``
    float32, ordered by person, role, face (a named tuple: unpack it or use the names).
    Usable means: the person is not merged away, the face still belongs to that person, and
    it has a vector in ``space``. ``quality`` is the face's current quality. A face may
    appear under two roles (e.g. best exemplar and best of its era); scoring by maximum
    similarity is unaffected. ``con`` reads inside a caller's transaction.
    """
    if con is not None:
        return store.usable_prototypes(con, space, person_ids)
    with catalog.read() as c:
        return store.usable_prototypes(c, space, person_ids)
