"""Labeling a cluster: its unassigned faces become a person's, in one undoable step.

A clustering pass groups unassigned faces that look alike; a person looks at a cluster and
names it. :func:`label_cluster` first computes the plan (the question a UI asks: "Label 47
faces as Anna?"), then writes it through the one face writer
(:func:`facelab.people.naming.assign_in`): the faces go to the person, the wrong faces the
user dropped leave the cluster with a rejection for that person, the cluster is marked
labeled and the person's prototypes are refreshed, all in one event group that
:func:`facelab.people.history.undo_group` reverts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from facelab.errors import FacelabError
from facelab.people.naming import as_face_ids, assign_in, clean_name, create_in, resolve_in
from facelab.people.prototypes import refresh_in
from facelab.settings import Settings
from facelab.store import clusters, events
from facelab.store import persons as store
from facelab.store.catalog import Catalog
from facelab.store.events import to_json
from facelab.store.persons import FaceChanges


@dataclass
class LabelPlan:
    """What :func:`label_cluster` does (or, with ``dry_run``, would do).

    ``person_id`` is None when a dry run names a person who does not exist yet
    (``created`` True: labeling would create them). ``face_ids`` are the faces to label;
    ``excluded`` the members that leave the cluster instead (excluded by the caller, or
    previously rejected for this person). ``group_id`` is the events' group once written.
    """

    cluster_id: str
    person_id: int | None
    name: str | None
    n_faces: int
    face_ids: list[int]
    created: bool
    excluded: list[int] = field(default_factory=list)
    group_id: int | None = None

    def question(self) -> str:
        """The sentence a labeling UI asks before writing: ``Label 47 faces as Anna?``."""
        who = self.name or (f"person {self.person_id}" if self.person_id else "a new person")
        new = " (new person)" if self.created else ""
        return f"Label {self.n_faces} face{'s' if self.n_faces != 1 else ''} as {who}{new}?"



def _label_plan(con: duckdb.DuckDBPyConnection, cluster_id: str, person: int | str,
                exclude: np.ndarray) -> tuple[LabelPlan, str]:
    """The plan, computed without writing (a new name gives person_id None)."""
    space = clusters.cluster_space(con, cluster_id)
    if space is None:
        raise FacelabError(f"cluster {cluster_id!r} does not exist; re-run clustering or list "
                           "clusters with status 'active'")
    pid, _ = resolve_in(con, person, False)
    name = (clean_name(person) if pid is None  # type: ignore[arg-type]
            else store.person_row(con, pid).name)  # type: ignore[union-attr]  # checked
    members = clusters.unassigned_members(con, cluster_id, rejected_for=pid)
    ids = np.empty(0, np.int64) if members is None else members.face_ids
    was_rejected = np.zeros(0, bool) if members is None else members.rejected
    leave = np.isin(ids, exclude) | was_rejected
    plan = LabelPlan(cluster_id=cluster_id, person_id=pid, name=name,
                     n_faces=int((~leave).sum()), face_ids=ids[~leave].tolist(),
                     created=pid is None, excluded=ids[leave].tolist())
    return plan, space


def label_cluster(catalog: Catalog, cluster_id: str, person: int | str, *,
                  exclude_faces: Iterable[int] = (), dry_run: bool = False,
                  settings: Settings | None = None,
                  evidence: dict[str, Any] | None = None) -> LabelPlan:
    """Label a cluster's unassigned faces as ``person`` (id, or name: created when new).

    ``exclude_faces`` (the wrong faces the user dropped from the gallery; ids not in the
    cluster are ignored) leave the cluster and get a rejection for that person, so they are
    never suggested for them again; faces already rejected for the person leave the cluster
    the same way. ``dry_run`` computes the plan ("Label 47 faces as Anna?",
    :meth:`LabelPlan.question`) without writing anything or creating the person.
    Otherwise, in one transaction: the faces are assigned (source ``cluster_label``, action
    ``label``), the cluster is marked ``labeled`` with its person, and the person's
    prototypes in the cluster's space are refreshed. The plan's ``group_id`` undoes all of
    it, including the person's creation when this label created it
    (:func:`~facelab.people.history.undo_group`). ``evidence`` is recorded with each
    face's assignment next to the cluster id (e.g. the proposal a label accepted).
    """
    exclude = as_face_ids(exclude_faces)
    if dry_run:
        with catalog.read() as con:
            plan, _ = _label_plan(con, cluster_id, person, exclude)
        return plan
    with catalog.write() as con:
        plan, space = _label_plan(con, cluster_id, person, exclude)
        if plan.n_faces == 0 and not plan.excluded:
            return plan  # nothing to do: in particular, no empty person is created
        group = events.new_group(con)
        if plan.person_id is None:
            plan.person_id = create_in(con, plan.name, group)
        pid = plan.person_id
        if plan.excluded:
            _exclude(con, np.array(plan.excluded, np.int64), pid, cluster_id, group)
        if plan.n_faces:
            assign_in(con, plan.face_ids, pid, source="cluster_label", action="label",
                      expected_revisions=None, run_id=None,
                      evidence={"cluster_id": cluster_id, **(evidence or {})},
                      group_id=group)
            clusters.mark_labeled(con, cluster_id, pid)
            refresh_in(con, pid, space, settings)
        plan.group_id = group
    return plan


def _exclude(con: duckdb.DuckDBPyConnection, ids: np.ndarray, person_id: int, cluster_id: str,
             group_id: int) -> None:
    """Unassigned faces leave their cluster and are rejected for ``person_id``."""
    st = store.face_states(con, ids, np.full(ids.size, person_id, np.int64))
    n = ids.size
    chg = FaceChanges(
        pos=list(range(n)), face_ids=ids.tolist(), new_person_ids=[None] * n,
        new_assigned_by=list(st.assigned_by), new_cluster_ids=[None] * n,
        evidence=[to_json({"cluster_id": cluster_id})] * n,
        rej_add=[None if r else person_id for r in st.rej_new], rej_remove=[None] * n)
    store.write_face_changes(con, chg, source="cluster_label", action="exclude", run_id=None,
                             group_id=group_id, rejection_source="cluster_exclude")
