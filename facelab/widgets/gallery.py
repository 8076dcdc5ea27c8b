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

Faces come outliers first (the toggle **outliers first**, on by default): farthest from the
cluster's mean first (:func:`facelab.people.clusters.outlier_order`), so the wrong faces of a
cluster are on its first page. Each tile says its similarity to that mean and its outlier
rank ("0.62 · r1": the farthest face). Off, faces come best quality first.

Besides labeling, on the cluster on show: **Merge in** another cluster
(:func:`~facelab.people.clusters.merge_clusters`: its faces join this one), **Skip** it
(:func:`~facelab.people.clusters.skip_cluster`; **Skipped** lists the skipped clusters,
where the button brings one back), and for the selected faces **Name selected as** a
person (:func:`facelab.people.naming.move_faces`) or **Not a face**
(:func:`facelab.people.naming.mark_not_a_face`). Each can be undone from the status line.

Every button calls a method of :class:`ClusterGallery` (``select``, ``ask``, ``confirm``,
``label``, ``undo``, ``show``, ``next_cluster``, ``merge``, ``skip``, ``name_selected``,
``not_a_face``, ...), the same calls a test or a notebook cell can make; the widgets only
mirror the controller's state.
"""

from __future__ import annotations

from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, labeling, naming, review
from facelab.people.clusters import clusters as list_clusters
from facelab.people.clusters import merge_clusters, outlier_order, skip_cluster
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import SKIPPED, cluster_faces
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, Picker, StatusLine, TileGrid, button, w


def person_names(catalog: Catalog) -> list[str]:
    """Names of the people one may label as (not merged away, not hidden), most faces first,
    without repeats: the options of the name box's autocompletion."""
    names = [p["name"] for p in naming.persons(catalog) if p["name"] and not p["hidden"]]
    return list(dict.fromkeys(names))


def plural(n: int, word: str) -> str:
    """``1 face``, ``2 faces``."""
    return f"{n} {word}{'s' if n != 1 else ''}"


def outlier_captions(members: list[int], sims: dict[int, float]) -> dict[int, str]:
    """Tile captions of faces ranked by similarity to their mean: "0.62 · r1" (similarity,
    outlier rank: 1 is the farthest face); a face without a similarity gets ``#id``."""
    ranked = sorted(sims, key=lambda f: (sims[f], f))
    rank = {f: i + 1 for i, f in enumerate(ranked)}
    return {f: f"{sims[f]:.2f} · r{rank[f]}" if f in sims else f"#{f}" for f in members}


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
    outliers_first : bool, default=True
        Faces farthest from the cluster's mean first (else best quality first).

    Attributes
    ----------
    clusters : list of dict
        The active clusters, largest first, as :func:`facelab.people.clusters.clusters` lists
        them; ``index`` is the one on show.
    members : list of int
        Unassigned faces of the cluster on show, outliers first (or best quality first).
    similarity : dict of int to float
        Each member's cosine similarity to the cluster's mean.
    skipped : bool
        Whether the gallery lists the skipped clusters instead of the active ones.
    selected : set of int
        Faces marked to drop (they will not be labeled).
    pending : LabelPlan or None
        The plan awaiting confirmation.
    last : LabelPlan or None
        The last label written.
    history : list of (str, object)
        Undoable actions, last one last: ``("label", LabelPlan)``, ``("group", (what,
        group id, cluster to show))`` or ``("skip", (cluster id, skipped))``.
    """

    _paged = "members"

    def __init__(self, catalog: Catalog, space: str | None = None, *, page_size: int = 48,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None,
                 outliers_first: bool = True) -> None:
        self.catalog = catalog
        self.space = space
        self.page_size = _check_page_size(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.clusters: list[dict[str, Any]] = []
        self.index = 0
        self.page = 0
        self.members: list[int] = []
        self.similarity: dict[int, float] = {}
        self.selected: set[int] = set()
        self.pending: labeling.LabelPlan | None = None
        self.last: labeling.LabelPlan | None = None
        self.history: list[tuple[str, Any]] = []
        self.skipped = False
        self._build()
        self.outliers_button.value = bool(outliers_first)
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
        self.outliers_button = w.ToggleButton(value=True, description="outliers first",
                                              tooltip="faces farthest from the cluster's "
                                              "mean first (off: best quality first)")
        self.outliers_button.add_class("facelab-outliers")
        self.outliers_button.observe(lambda _c: self.show(self.index), names="value")
        self.skipped_button = w.ToggleButton(value=False, description="Skipped",
                                             tooltip="list the clusters set aside")
        self.skipped_button.add_class("facelab-show-skipped")
        self.skipped_button.observe(lambda c: self.show_skipped(c["new"]), names="value")
        self.skip_button = button("Skip", "facelab-skip", icon="forward")
        self.skip_button.on_click(lambda _b: self._guard(lambda: self.skip(not self.skipped)))
        self.merge_box = Picker(None, "facelab-merge-cluster", width="260px")
        self.merge_button = button("Merge in", "facelab-merge-clusters", icon="compress")
        self.merge_button.on_click(lambda _b: self._guard(lambda: self.merge(
            self.merge_box.value)))
        self.selected_name = w.Combobox(placeholder="name for the selected…", options=[],
                                        ensure_option=False, layout=w.Layout(width="200px"))
        self.selected_name.add_class("facelab-name-selected")
        self.name_selected_button = button("Name selected", "facelab-name-selected-button",
                                           icon="user")
        self.name_selected_button.on_click(lambda _b: self._guard(lambda: self.name_selected(
            self.selected_name.value)))
        self.not_face_button = button("Not a face", "facelab-not-a-face", icon="ban")
        self.not_face_button.on_click(lambda _b: self._guard(self.not_a_face))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            w.HBox([self.prev_button, self.next_button, self.title]),
            w.HBox([self.outliers_button, self.skip_button, self.skipped_button,
                    self.merge_box.box, self.merge_button]),
            self.grid.box,
            w.HBox([self.prev_page_button, self.next_page_button, self.selected_name,
                    self.name_selected_button, self.not_face_button]),
            w.HBox([self.name_box, self.label_button]),
            self.confirm_box,
            self.status.box,
        ])
        self.widget.add_class("facelab-cluster-gallery")

    def _render(self) -> None:
        n = len(self.clusters)
        kind = "Skipped cluster" if self.skipped else "Cluster"
        if not n:
            self.title.value = ("<b>No skipped clusters</b>" if self.skipped else
                                "<b>No clusters to label</b> (cluster the unassigned faces "
                                "first)")
        else:
            c = self.clusters[self.index]
            self.title.value = (f"<b>{kind} {self.index + 1} of {n}</b> · {c['cluster_id']} · "
                                f"{len(self.members)} faces · page {self.page + 1} of "
                                f"{self.pages}")
        lo = self.page * self.page_size
        page = self.members[lo:lo + self.page_size]
        captions = outlier_captions(page, self.similarity)
        tips = {f: (f"face {f}: similarity {self.similarity[f]:.3f} to the cluster's mean "
                    f"({captions[f].split(' · ')[1]}: r1 is the farthest); click to select")
                for f in page if f in self.similarity}
        self.grid.show([(f, f, captions[f]) for f in page], self.selected, tooltips=tips)
        self.prev_button.disabled = self.index <= 0
        self.next_button.disabled = self.index >= n - 1
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1
        self.skip_button.description = "Unskip" if self.skipped else "Skip"
        self.skip_button.disabled = not n
        self.merge_box.set([("merge in cluster …", None)] + [
            (f"{c['cluster_id']} ({c['size']} faces)", c["cluster_id"]) for c in self.clusters
            if c["cluster_id"] != self.cluster_id], None)
        self._update_label_button()

    def _update_label_button(self) -> None:
        name = self.name_box.value.strip()
        k = self.count
        self.label_button.description = (f"Label {k} face{'s' if k != 1 else ''} as "
                                         f"{name or '…'}")
        self.label_button.disabled = not self.clusters or k == 0
        self.name_selected_button.description = (
            f"Name {plural(len(self.selected), 'face')} as" if self.selected else
            "Name selected")
        self.name_selected_button.disabled = not self.selected
        self.not_face_button.disabled = not self.selected

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
        self.name_box.options = self.selected_name.options = person_names(self.catalog)
        self.clusters = list_clusters(self.catalog, self.space,
                                      status=SKIPPED if self.skipped else "active")
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
        self.members, self.similarity = [], {}
        if self.clusters:
            found = cluster_faces(self.catalog, [self.cluster_id], best_first=True)
            self.members = [int(f) for f in found.get(self.cluster_id, [])]
            ids, sims = outlier_order(self.catalog, self.clusters[self.index]["space"],
                                      self.members)
            self.similarity = dict(zip(ids.tolist(), sims.tolist(), strict=True))
            if self.outliers_first:
                far = ids.tolist()
                self.members = far + [f for f in self.members if f not in self.similarity]
        self._render()

    @property
    def outliers_first(self) -> bool:
        """Whether faces come farthest from the cluster's mean first."""
        return bool(self.outliers_button.value)

    def next_cluster(self) -> None:
        self.show(self.index + 1)

    def show_skipped(self, on: bool = True) -> None:
        """List the skipped clusters (``on``) or the clusters to label again."""
        if self.skipped != bool(on):
            self.skipped = bool(on)
            self.index = 0
            self.refresh()
        self.skipped_button.value = self.skipped

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
        if done.group_id is not None:
            self.history.append(("label", done))
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

    def merge(self, other: str | None) -> int:
        """Merge cluster ``other`` into the one on show (undoable); returns its faces moved
        in."""
        if other is None:
            raise FacelabError("choose the cluster to merge in")
        target = self.cluster_id
        if target is None:
            raise FacelabError("there is no cluster to merge into")
        n = len(cluster_faces(self.catalog, [other]).get(other, []))
        group = merge_clusters(self.catalog, target, other)
        self.history.append(("group", ("merge", group, target)))
        self.refresh(target)
        self.status.say(f"Merged cluster {other} ({plural(n, 'face')}) into {target} — undo?",
                        undo=True)
        return n

    def skip(self, skip: bool = True) -> str:
        """Set the cluster on show aside (``skip``; the next one is shown) or, in the list
        of skipped clusters, bring it back; undoable. Returns its id."""
        cid = self.cluster_id
        if cid is None:
            raise FacelabError("there is no cluster to skip")
        skip_cluster(self.catalog, cid, skip=skip)
        self.history.append(("skip", (cid, skip)))
        self.refresh()
        self.status.say(f"{'Skipped' if skip else 'Brought back'} cluster {cid} — undo?",
                        undo=True)
        return cid

    def name_selected(self, name: str) -> list[int]:
        """Give the selected faces to the person called ``name`` (created when new),
        undoable; returns the faces named."""
        if not self.selected:
            raise FacelabError("select faces first")
        who = naming.clean_name(name)
        result = naming.move_faces(self.catalog, sorted(self.selected), who)
        review.cleanup(self.catalog)  # their pending suggestions are moot now
        self.history.append(("group", ("name", result.group_id, self.cluster_id)))
        self.selected_name.value = ""
        self.refresh()
        self.status.say(f"Named {plural(len(result.changed), 'face')} as {who} — undo?",
                        undo=True)
        return result.changed

    def not_a_face(self) -> list[int]:
        """Mark the selected faces as not faces (out of the cluster, kept in the catalog);
        undoable. Returns the faces marked."""
        if not self.selected:
            raise FacelabError("select the faces that are not faces first")
        result = naming.mark_not_a_face(self.catalog, sorted(self.selected))
        self.history.append(("group", ("not-a-face", result.group_id, self.cluster_id)))
        self.refresh()
        self.status.say(f"Marked {plural(len(result.changed), 'face')} as not a face — undo?",
                        undo=True)
        return result.changed

    def undo(self) -> int:
        """Undo the last action of the gallery: a label (its faces are unlabeled again, the
        dropped faces back in the cluster, the cluster open again and shown), a merge, a
        skip, a name or a not-a-face. Returns the faces restored."""
        if not self.history:
            raise FacelabError("nothing to undo")
        kind, what = self.history.pop()
        if kind == "skip":
            cid, skipped = what
            skip_cluster(self.catalog, cid, skip=not skipped)
            self.refresh(cid)
            self.status.say(f"Undone: cluster {cid} is {'back' if skipped else 'skipped'}",
                            undo=bool(self.history))
            return 0
        if kind == "group":
            action, group, cid = what
            n = history.undo_group(self.catalog, group)
            self.refresh(cid)
            self.status.say(f"Undone {action}: {plural(n, 'face')} as before",
                            undo=bool(self.history))
            return n
        last = what
        if self.last is last:
            self.last = None
        n = history.undo_group(self.catalog, last.group_id)
        self.refresh(last.cluster_id)
        self.status.say(f"Undone: {plural(n, 'face')} of cluster "
                        f"{last.cluster_id} are unlabeled again", undo=bool(self.history))
        return n
