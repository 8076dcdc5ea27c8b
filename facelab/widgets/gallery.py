"""The cluster gallery: name a whole cluster in one click, after dropping its wrong faces.

Clusters of unassigned faces come largest first (:func:`facelab.people.clusters.clusters`): the
biggest cluster names the most faces per click. One cluster is shown at a time, in pages of
face tiles. Clicking a tile marks it as *not this person* (dropped); "Label 47 faces as …"
takes a name from a box that autocompletes over the people already known, asks the
question :func:`facelab.people.labeling.label_cluster` computes without writing (``dry_run``: the
count, whether the name is a new person, which faces stay out), and only the confirmation
writes, with the dropped faces as ``exclude_faces`` (they leave the cluster and are never
suggested for that person again). The status line says what happened and offers Undo
(:func:`facelab.people.history.undo_group` on the label's event group), which re-opens the cluster.

Every button calls a method of :class:`ClusterGallery` (``select``, ``ask``, ``confirm``,
``label``, ``undo``, ``show``, ``next_cluster``, ...), the same calls a test or a notebook
cell can make; the widgets only mirror the controller's state.
"""

from __future__ import annotations

from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, labeling, naming
from facelab.people.clusters import clusters as list_clusters
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import cluster_faces
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, StatusLine, TileGrid, button, w


def person_names(catalog: Catalog) -> list[str]:
    """Names of the people one may label as (not merged away, not hidden), most faces first,
    without repeats: the options of the name box's autocompletion."""
    names = [p["name"] for p in naming.persons(catalog) if p["name"] and not p["hidden"]]
    return list(dict.fromkeys(names))


def _check_page_size(page_size: int) -> int:
    if not 1 <= int(page_size) <= 500:
        raise ConfigError(f"page_size={page_size} must be between 1 and 500 faces")
    return int(page_size)


class ClusterGallery(PagedPanel):
    """Label clusters of unassigned faces, biggest first.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    space : str, optional
        Only clusters of this embedding space (default: every space).
    page_size : int, default=48
        Faces per page of a cluster.
    thumbs : ThumbCache, optional
        Shared tile cache (default: a new one, 112 px tiles).
    settings : Settings, optional
        Passed to ``label_cluster`` (prototype refresh).

    Attributes
    ----------
    clusters : list of dict
        The active clusters, largest first, as :func:`facelab.people.clusters.clusters` lists
        them; ``index`` is the one on show.
    members : list of int
        Unassigned faces of the cluster on show, best quality first.
    selected : set of int
        Faces marked to drop (they will not be labeled).
    pending : LabelPlan or None
        The plan awaiting confirmation.
    last : LabelPlan or None
        The last label written (what Undo reverts).
    """

    _paged = "members"

    def __init__(self, catalog: Catalog, space: str | None = None, *, page_size: int = 48,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None) -> None:
        self.catalog = catalog
        self.space = space
        self.page_size = _check_page_size(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.clusters: list[dict[str, Any]] = []
        self.index = 0
        self.page = 0
        self.members: list[int] = []
        self.selected: set[int] = set()
        self.pending: labeling.LabelPlan | None = None
        self.last: labeling.LabelPlan | None = None
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.title = w.HTML()
        self.title.add_class("facelab-cluster-title")
        self.prev_button = button("◀ cluster", "facelab-prev-cluster")
        self.next_button = button("cluster ▶", "facelab-next-cluster")
        self.prev_page_button = button("◀ page", "facelab-prev-page")
        self.next_page_button = button("page ▶", "facelab-next-page")
        self.prev_button.on_click(lambda _b: self.show(self.index - 1))
        self.next_button.on_click(lambda _b: self.show(self.index + 1))
        self.prev_page_button.on_click(lambda _b: self.turn(-1))
        self.next_page_button.on_click(lambda _b: self.turn(+1))
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-cluster-grid")
        self.name_box = w.Combobox(placeholder="name…", options=[], ensure_option=False,
                                   layout=w.Layout(width="240px"))
        self.name_box.add_class("facelab-name")
        self.name_box.observe(lambda _c: self._update_label_button(), names="value")
        self.label_button = button("Label", "facelab-label", icon="tag", style="primary")
        self.label_button.on_click(lambda _b: self._guard(self.ask))
        self.question = w.HTML()
        self.question.add_class("facelab-question")
        self.confirm_button = button("Yes, label them", "facelab-confirm", style="success")
        self.cancel_button = button("Cancel", "facelab-cancel")
        self.confirm_button.on_click(lambda _b: self._guard(self.confirm))
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.confirm_box = w.HBox([self.question, self.confirm_button, self.cancel_button],
                                  layout=w.Layout(display="none"))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            w.HBox([self.prev_button, self.next_button, self.title]),
            self.grid.box,
            w.HBox([self.prev_page_button, self.next_page_button]),
            w.HBox([self.name_box, self.label_button]),
            self.confirm_box,
            self.status.box,
        ])
        self.widget.add_class("facelab-cluster-gallery")

    def _render(self) -> None:
        n = len(self.clusters)
        if not n:
            self.title.value = "<b>No clusters to label</b> (cluster the unassigned faces first)"
        else:
            c = self.clusters[self.index]
            self.title.value = (f"<b>Cluster {self.index + 1} of {n}</b> · {c['cluster_id']} · "
                                f"{len(self.members)} faces · page {self.page + 1} of "
                                f"{self.pages}")
        lo = self.page * self.page_size
        page = self.members[lo:lo + self.page_size]
        self.grid.show([(f, f, f"#{f}") for f in page], self.selected)
        self.prev_button.disabled = self.index <= 0
        self.next_button.disabled = self.index >= n - 1
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1
        self._update_label_button()

    def _update_label_button(self) -> None:
        name = self.name_box.value.strip()
        k = self.count
        self.label_button.description = (f"Label {k} face{'s' if k != 1 else ''} as "
                                         f"{name or '…'}")
        self.label_button.disabled = not self.clusters or k == 0

    # ------------------------------------------------------------------ state
    @property
    def cluster_id(self) -> str | None:
        """The cluster on show (None when there is none)."""
        return self.clusters[self.index]["cluster_id"] if self.clusters else None

    @property
    def count(self) -> int:
        """Faces the Label button would label: the members not dropped."""
        return len(self.members) - len(self.selected)

    def refresh(self, cluster_id: str | None = None) -> None:
        """Re-read the clusters and show ``cluster_id`` (default: the one on show, or the
        cluster now at its position when it was labeled)."""
        keep = cluster_id or self.cluster_id
        self.name_box.options = person_names(self.catalog)
        self.clusters = [c for c in list_clusters(self.catalog, self.space) if c["size"] > 0]
        ids = [c["cluster_id"] for c in self.clusters]
        index = ids.index(keep) if keep in ids else min(self.index, max(len(ids) - 1, 0))
        self.show(index)

    def show(self, index: int) -> None:
        """Show the ``index``-th cluster (0 = largest) from its first page; clears the
        selection and any question awaiting confirmation."""
        self.index = max(0, min(int(index), len(self.clusters) - 1)) if self.clusters else 0
        self.page = 0
        self.selected = set()
        self.cancel()
        self.members = []
        if self.clusters:
            found = cluster_faces(self.catalog, [self.cluster_id], best_first=True)
            self.members = [int(f) for f in found.get(self.cluster_id, [])]
        self._render()

    def next_cluster(self) -> None:
        self.show(self.index + 1)

    def select(self, face_id: int, selected: bool = True) -> None:
        """Mark a face of the cluster to drop (``selected``) or keep it again."""
        face_id = int(face_id)
        if face_id not in self.members:
            raise FacelabError(f"face {face_id} is not in cluster {self.cluster_id}")
        self._mark(face_id, selected)
        self._update_label_button()

    def toggle(self, face_id: int) -> None:
        self.select(face_id, int(face_id) not in self.selected)

    # ------------------------------------------------------------------ actions
    def plan(self, name: str | None = None) -> labeling.LabelPlan:
        """What labeling now would do, written nowhere (``label_cluster(dry_run=True)``)."""
        name = (name if name is not None else self.name_box.value).strip()
        if not name:
            raise FacelabError("type a name first")
        if self.cluster_id is None:
            raise FacelabError("there is no cluster to label")
        return labeling.label_cluster(self.catalog, self.cluster_id, name,
                                      exclude_faces=sorted(self.selected), dry_run=True,
                                      settings=self.settings)

    def ask(self, name: str | None = None) -> str:
        """The confirmation step: compute the plan and show its question; returns it."""
        self.pending = self.plan(name)
        text = self.pending.question()
        rejected = len(self.pending.excluded) - len(self.selected & set(self.pending.excluded))
        if rejected > 0:
            text += (f" ({rejected} face{'s' if rejected != 1 else ''} ruled out for this "
                     "person before stay out.)")
        self.question.value = f"<b>{text}</b>"
        self.confirm_box.layout.display = ""
        return text

    def cancel(self) -> None:
        """Forget the question awaiting confirmation."""
        self.pending = None
        self.confirm_box.layout.display = "none"

    def confirm(self) -> labeling.LabelPlan:
        """Write the pending label (with the dropped faces excluded) and show the next
        cluster; the status line offers Undo."""
        if self.pending is None:
            raise FacelabError("nothing to confirm: press Label first")
        plan = self.pending
        who = plan.name or f"person {plan.person_id}"
        done = labeling.label_cluster(self.catalog, plan.cluster_id,
                                      plan.person_id if plan.person_id is not None else who,
                                      exclude_faces=sorted(self.selected),
                                      settings=self.settings)
        self.last = done
        self.cancel()
        self.name_box.value = ""
        self.refresh()
        dropped = f", {len(done.excluded)} left out" if done.excluded else ""
        self.status.say(f"Labeled {done.n_faces} face{'s' if done.n_faces != 1 else ''} as "
                        f"{who}{dropped} — undo?", undo=done.group_id is not None)
        return done

    def label(self, name: str) -> labeling.LabelPlan:
        """Ask and confirm in one call (what a notebook cell or a test does)."""
        self.ask(name)
        return self.confirm()

    def undo(self) -> int:
        """Undo the last label: its faces are unassigned again, the dropped faces back in
        the cluster, the cluster open again (and shown). Returns the faces restored."""
        if self.last is None or self.last.group_id is None:
            raise FacelabError("nothing to undo")
        last, self.last = self.last, None
        n = history.undo_group(self.catalog, last.group_id)
        self.refresh(last.cluster_id)
        self.status.say(f"Undone: {n} face{'s' if n != 1 else ''} of cluster "
                        f"{last.cluster_id} are unlabeled again")
        return n
