"""The proposal pages: "Who is this?" for unnamed faces, "Is this cluster also Anna?" for
clusters.

Proposals (:mod:`facelab.people.propose`) go from an unnamed face or cluster to the person
its nearest named faces belong to, however low the score: they reach the faces a threshold
set for precision never does (a child's faces, far from the same person's adult faces). A
low score is only worth a click when the user sees why it was made, so every proposal shows
its evidence line (:func:`facelab.people.explain.format_proposal`: "0.61 from Anna's face of
2003, taken 2 years apart; next: Ben 0.48").

* :class:`ProposalReview` -- pages of at most 24 face proposals across all people, best
  score first, each tile captioned short ("Anna? 0.61") with the evidence line as its
  tooltip and, for the tile selected last, under the grid. The controls are those of
  :class:`~facelab.widgets.SuggestionReview` (Reject selected, Accept all -- the rest of the
  page --, Undo, page turns), undone the same way (an accept with
  :func:`facelab.people.history.undo_group` then :func:`facelab.people.review.requeue`, a
  reject with :func:`facelab.people.review.unreject`). After each of them the proposals are
  made again (:func:`~facelab.people.propose.propose_faces`): a name given or taken away
  changes whose faces are nearest, and a rejected face's next proposal is its next person.
* :class:`ClusterProposals` -- one row per cluster proposal, best first: a few of the
  cluster's faces beside the person's face taken nearest in time (a child's cluster is
  judged against the person's face of that age, not their adult face), the evidence line,
  and **Yes** (:func:`~facelab.people.propose.accept_cluster`) / **Not Anna**
  (:func:`~facelab.people.propose.reject_cluster`), both undoable (an accept with
  :func:`facelab.people.history.undo_group`, a "Not" with
  :func:`~facelab.people.propose.unreject_cluster`).

As in the other galleries, every button calls a public method (``propose``, ``select``,
``accept_all``, ``reject_selected``, ``accept``, ``reject``, ``undo``, ``turn``), the same
calls a test or a notebook cell can make.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, naming, propose, review
from facelab.people.explain import format_proposal
from facelab.people.labeling import LabelPlan
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.clusters import cluster_faces
from facelab.widgets.review import (
    MAX_PAGE,
    Decision,
    accept_page,
    label_review_buttons,
    reject_page,
    review_controls,
    undo_decision,
)
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, StatusLine, TileGrid, button, w

#: Cluster proposals per page: each row is several tiles wide, and a handful of rows is
#: what fits on a screen without scrolling past the buttons.
ROWS_PER_PAGE = 5
#: Faces of a cluster shown in its row: enough to see whether the cluster is one person.
FACES_PER_ROW = 4


def who(name: str | None, person_id: int | None) -> str:
    """A person as the pages name them: the name, or ``#id`` for a person without one."""
    return name or (f"#{person_id}" if person_id is not None else "?")


def face_proposal_text(item: dict[str, Any], names: dict[int, str | None]) -> str:
    """The evidence line of a face proposal (a ``review.pending`` row); ``names`` maps
    person ids to names, for the runner-up, whose evidence holds only its id."""
    second = (item["evidence"] or {}).get("runner_up")
    runner = who(names.get(int(second["person_id"])), int(second["person_id"])) if second \
        else None
    return format_proposal(item["evidence"] or {}, who(item["person_name"], item["person_id"]),
                           runner)


def cluster_proposal_text(proposal: dict[str, Any]) -> str:
    """The evidence line of a cluster proposal (a ``propose_clusters`` item), the
    runner-up by name."""
    second = proposal.get("runner_up")
    return format_proposal(proposal["evidence"],
                           who(proposal["person_name"], proposal["person_id"]),
                           who(second["person_name"], second["person_id"]) if second else None)


def _text(text: str) -> str:
    """``text`` as HTML body text (quotes stay readable: "Anna's face")."""
    return html.escape(text, quote=False)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------- face proposals


class ProposalReview(PagedPanel):
    """The "Who is this?" page: one proposed name per unnamed face, 24 a page.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    space : str
        The embedding space whose unnamed faces are proposed for.
    page_size : int, default=24
        Tiles per page, at most :data:`~facelab.widgets.review.MAX_PAGE`.
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`; ``settings`` also go to
        ``propose_faces`` and ``review.accept``.

    The page shows the proposals pending when it opens; **Propose** makes them afresh.

    Attributes
    ----------
    items : list of dict
        Pending proposals (``review.pending(source="proposal")`` rows), best score first.
    selected : set of int
        Selected suggestion ids (to reject).
    shown : int or None
        The suggestion whose evidence is on the line under the grid.
    history : list
        Undoable actions, last one last.
    """

    _paged = "items"

    def __init__(self, catalog: Catalog, space: str, *, page_size: int = MAX_PAGE,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None) -> None:
        if not 1 <= int(page_size) <= MAX_PAGE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE}: a "
                              "review page must be small enough to check at a glance")
        self.catalog = catalog
        self.space = space
        self.page_size = int(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.items: list[dict[str, Any]] = []
        self.page = 0
        self.selected: set[int] = set()
        self.shown: int | None = None
        self.history: list[Decision] = []
        self._names: dict[int, str | None] = {}
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.propose_button = button("Propose", "facelab-propose", icon="question",
                                     style="primary")
        self.title = w.HTML()
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-proposal-grid")
        self.detail = w.HTML()
        self.detail.add_class("facelab-proposal-detail")
        self.propose_button.on_click(lambda _b: self._guard(self.propose))
        controls = review_controls(self, self._guard)
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([w.HBox([self.propose_button, self.title]), self.grid.box,
                              self.detail, controls, self.status.box])
        self.widget.add_class("facelab-proposals")

    def _render(self) -> None:
        page = self.page_items
        n = len(self.items)
        self.title.value = (f"<b>Who is this? {_plural(n, 'proposal')}</b> · page "
                            f"{self.page + 1} of {self.pages}" if n else
                            "<b>No proposals</b> (Propose makes them for the unnamed faces)")
        self.grid.show([(s["suggestion_id"], s["face_id"], self.caption(s)) for s in page],
                       self.selected)
        for s in page:  # the full evidence on hover
            self.grid.toggles[s["suggestion_id"]].tooltip = (
                f"face {s['face_id']}: {self.evidence(s['suggestion_id'])}")
        self._render_buttons()
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    def _render_buttons(self) -> None:
        label_review_buttons(self)
        on_page = {s["suggestion_id"] for s in self.page_items}
        if self.shown not in on_page:
            self.shown = None
        if self.shown is None:
            self.detail.value = ""
        else:
            face = self._item(self.shown)["face_id"]
            self.detail.value = f"<i>{_text(f'face {face}: {self.evidence(self.shown)}')}</i>"

    # ------------------------------------------------------------------ state
    @property
    def page_items(self) -> list[dict[str, Any]]:
        lo = self.page * self.page_size
        return self.items[lo:lo + self.page_size]

    def caption(self, item: dict[str, Any]) -> str:
        """A tile's caption: the proposed name and score, short enough for a tile."""
        return f"{who(item['person_name'], item['person_id'])}? {item['score']:.2f}"

    def evidence(self, suggestion_id: int) -> str:
        """The evidence line of a proposal on show ("0.61 from Anna's face of 2003, ...")."""
        return face_proposal_text(self._item(suggestion_id), self._names)

    def _item(self, suggestion_id: int) -> dict[str, Any]:
        for s in self.items:
            if s["suggestion_id"] == int(suggestion_id):
                return s
        raise FacelabError(f"proposal {suggestion_id} is not pending")

    def refresh(self) -> None:
        """Re-read the pending proposals, keeping the page and the selected faces whose
        proposed person is unchanged (a face now proposed for someone else is not the one
        the user ruled out)."""
        keep = {(s["face_id"], s["person_id"]) for s in self.items
                if s["suggestion_id"] in self.selected}
        shown = next(((s["face_id"], s["person_id"]) for s in self.items
                      if s["suggestion_id"] == self.shown), None)
        self._names = {p["person_id"]: p["name"]
                       for p in naming.persons(self.catalog, include_merged=True)}
        self.items = review.pending(self.catalog, space=self.space, source=propose.SOURCE)
        self.page = max(0, min(self.page, self.pages - 1))
        on_page = {(s["face_id"], s["person_id"]): s["suggestion_id"] for s in self.page_items}
        self.selected = {on_page[k] for k in keep if k in on_page}
        self.shown = on_page.get(shown) if shown is not None else None
        self._render()

    def turn(self, pages: int) -> None:
        """Move ``pages`` pages; the selection is of one page's proposals, so it is cleared."""
        self.selected = set()
        super().turn(pages)

    def select(self, suggestion_id: int, selected: bool = True) -> None:
        """Select a proposal of the page (to reject it; its evidence goes under the grid),
        or unselect it."""
        sid = int(suggestion_id)
        if sid not in {s["suggestion_id"] for s in self.page_items}:
            raise FacelabError(f"proposal {sid} is not on this page")
        self._mark(sid, selected)
        if selected:
            self.shown = sid
        elif self.shown == sid:
            self.shown = max(self.selected, default=None)
        self._render_buttons()

    # ------------------------------------------------------------------ actions
    def propose(self) -> int:
        """Make the proposals afresh for every unnamed face of the space and show the first
        page; returns how many were made."""
        n = self._repropose()
        self.page, self.selected, self.shown = 0, set(), None
        self.refresh()
        self.status.say(f"Proposed a name for {_plural(n, 'face')}", undo=bool(self.history))
        return n

    def _repropose(self) -> int:
        return propose.propose_faces(self.catalog, self.space, self.settings)

    def accept_all(self) -> dict[str, Any]:
        """Accept every proposal of the page that is not selected, then propose again for
        the faces left; returns ``review.accept``'s report."""
        report, decision = accept_page(
            self.catalog, [s["suggestion_id"] for s in self.page_items
                           if s["suggestion_id"] not in self.selected],
            settings=self.settings)
        if decision is not None:
            self.history.append(decision)
        self._repropose()
        self.refresh()
        n = len(report["accepted"])
        extra = f"; {len(report['conflicts'])} changed since and expired" if report[
            "conflicts"] else ""
        self.status.say(f"Named {_plural(n, 'face')}{extra}; proposals made again — undo?",
                        undo=bool(report["accepted"]))
        return report

    def reject_selected(self) -> int:
        """Reject the selected proposals (that person is never proposed for those faces
        again), then propose again: their next proposal is their next person."""
        chosen = [s for s in self.page_items if s["suggestion_id"] in self.selected]
        if not chosen:
            raise FacelabError("select the wrong proposals first")
        n, decision = reject_page(self.catalog, chosen)
        self.history.append(decision)
        self.selected, self.shown = set(), None
        self._repropose()
        self.refresh()
        self.status.say(f"Rejected {_plural(n, 'proposal')}; proposals made again — undo?",
                        undo=n > 0)
        return n

    def undo(self) -> int:
        """Undo the last accept or reject and propose again, so the page shows the faces as
        before. Returns the number of suggestions put back before proposing again."""
        if not self.history:
            raise FacelabError("nothing to undo")
        last = self.history.pop()
        n = undo_decision(self.catalog, last)
        self._repropose()
        self.refresh()
        self.status.say(f"Undone {last.kind}: {_plural(n, 'proposal')} back, proposals made "
                        "again", undo=bool(self.history))
        return n



# --------------------------------------------------------------------------- cluster proposals


@dataclass
class ProposalRow:
    """The widgets of one cluster proposal's row (its buttons, for tests and notebooks)."""

    cluster_id: str
    person_face: int
    cluster_faces: list[int]
    evidence: w.HTML
    accept_button: w.Button
    reject_button: w.Button
    box: w.Box


class ClusterProposals(PagedPanel):
    """Asks "is this cluster also Anna?" for each active cluster: the person it looks like,
    best first.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    space : str
        The embedding space of the clusters and of the named faces they are compared with.
    page_size : int, default=5
        Rows per page.
    faces_shown : int, default=4
        Faces of each cluster shown in its row (best quality first, the face of the
        evidence's best pair among them).
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.

    Attributes
    ----------
    proposals : list of dict
        :func:`~facelab.people.propose.propose_clusters` of the space, best first.
    rows : dict of str to ProposalRow
        The rows on show, by cluster id.
    history : list of int
        Event groups of the accepts, last one last (what Undo reverts).
    """

    _paged = "proposals"

    def __init__(self, catalog: Catalog, space: str, *, page_size: int = ROWS_PER_PAGE,
                 faces_shown: int = FACES_PER_ROW, thumbs: ThumbCache | None = None,
                 settings: Settings | None = None) -> None:
        if not 1 <= int(page_size) <= MAX_PAGE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE} rows")
        if not 1 <= int(faces_shown) <= 12:
            raise ConfigError(f"faces_shown={faces_shown} must be between 1 and 12 faces")
        self.catalog = catalog
        self.space = space
        self.page_size = int(page_size)
        self.faces_shown = int(faces_shown)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.proposals: list[dict[str, Any]] = []
        self.page = 0
        self.selected: set[int] = set()  # PagedPanel's; rows are decided, not selected
        self.rows: dict[str, ProposalRow] = {}
        # undoable decisions: ('accept', event group) or ('reject', (cluster, person))
        self.history: list[tuple[str, Any]] = []
        self._widgets: list[w.Widget] = []
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.title = w.HTML()
        self.refresh_button = button("Propose again", "facelab-propose", icon="refresh")
        self.refresh_button.on_click(lambda _b: self._guard(self.refresh))
        self.rows_box = w.VBox()
        self.rows_box.add_class("facelab-cluster-proposals-rows")
        self.prev_page_button = button("◀ page", "facelab-prev-page")
        self.next_page_button = button("page ▶", "facelab-next-page")
        self.prev_page_button.on_click(lambda _b: self.turn(-1))
        self.next_page_button.on_click(lambda _b: self.turn(+1))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            w.HBox([self.refresh_button, self.title]), self.rows_box,
            w.HBox([self.prev_page_button, self.next_page_button]), self.status.box])
        self.widget.add_class("facelab-cluster-proposals")

    def _render(self) -> None:
        for old in self._widgets:  # each widget holds a comm to the browser
            old.close()
        self._widgets, self.rows = [], {}
        n = len(self.proposals)
        self.title.value = (f"<b>Is this cluster also …?</b> {_plural(n, 'proposal')} · "
                            f"page {self.page + 1} of {self.pages}" if n else
                            "<b>No cluster proposals</b> (name some faces first)")
        page = self.page_items
        members = cluster_faces(self.catalog, [p["cluster_id"] for p in page],
                                best_first=True, limit=self.faces_shown)
        shown = []
        for p in page:
            ev = p["evidence"]
            best = [int(f) for f in members.get(p["cluster_id"], [])]
            faces = [ev["face_id"], *(f for f in best if f != ev["face_id"])]
            near = ev.get("nearest_in_time") or {}
            person = near.get("face_id")
            shown.append((faces[:self.faces_shown],
                          int(ev["matched_face_id"] if person is None else person)))
        jpegs = iter(self.thumbs.get_many([f for faces, person in shown
                                           for f in (*faces, person)]))
        self.rows_box.children = [self._row(p, faces, person, jpegs)
                                  for p, (faces, person) in zip(page, shown, strict=True)]
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    def _row(self, p: dict[str, Any], faces: Sequence[int], person_face: int,
             jpegs: Iterator[bytes]) -> w.Box:
        """One proposal: the cluster's faces, the person's face, the evidence, the buttons."""
        size = self.thumbs.size
        name = who(p["person_name"], p["person_id"])
        cid = p["cluster_id"]
        tiles = [self._image(next(jpegs), size, f"face {f} of the cluster") for f in faces]
        near = p["evidence"].get("nearest_in_time")
        them = self._image(next(jpegs), size, f"face {person_face}: {name}"
                           + (f", {near['year']}" if near else ""))
        caption = w.HTML(_text(name + (f", {near['year']}" if near else "")))
        question = w.HTML(f"<b>{_text(_plural(p['size'], 'face'))}: also "
                          f"{_text(name)}?</b>")
        text = w.HTML(_text(cluster_proposal_text(p)))
        text.add_class("facelab-proposal-detail")
        accept = button(f"Yes, {name}", "facelab-accept-cluster", icon="check",
                        style="success")
        reject = button(f"Not {name}", "facelab-reject-cluster", icon="times", style="danger")
        accept.on_click(lambda _b: self._guard(lambda: self.accept(cid)))
        reject.on_click(lambda _b: self._guard(lambda: self.reject(cid)))
        cluster_box = w.HBox(tiles)
        person_box = w.VBox([them, caption], layout=w.Layout(margin="0 0 0 16px"))
        side = w.VBox([question, text, w.HBox([accept, reject])],
                      layout=w.Layout(margin="0 0 0 16px"))
        box = w.HBox([cluster_box, person_box, side], layout=w.Layout(margin="4px 0"))
        box.add_class("facelab-cluster-proposal")
        self._widgets += [*tiles, them, caption, question, text, accept, reject, cluster_box,
                          person_box, side, box]
        self.rows[cid] = ProposalRow(cid, person_face, list(faces), text, accept, reject,
                                    box)
        return box

    @staticmethod
    def _image(jpeg: bytes, size: int, tooltip: str) -> w.Image:
        image = w.Image(value=jpeg, format="jpeg", width=size, height=size,
                        tooltip=tooltip, layout=w.Layout(margin="2px"))
        image.add_class("facelab-tile")
        return image

    # ------------------------------------------------------------------ state
    @property
    def page_items(self) -> list[dict[str, Any]]:
        lo = self.page * self.page_size
        return self.proposals[lo:lo + self.page_size]

    def proposal(self, cluster_id: str) -> dict[str, Any]:
        """The proposal on show for ``cluster_id``."""
        for p in self.proposals:
            if p["cluster_id"] == cluster_id:
                return p
        raise FacelabError(f"cluster {cluster_id!r} has no proposal now")

    def refresh(self) -> None:
        """Propose again for every active cluster (nothing is stored: this only reads),
        keeping the page."""
        self.proposals = propose.propose_clusters(self.catalog, self.space, self.settings)
        self.page = max(0, min(self.page, self.pages - 1))
        self._render()

    # ------------------------------------------------------------------ actions
    def accept(self, cluster_id: str) -> LabelPlan:
        """Label the cluster as its proposed person (undoable), then propose again."""
        p = self.proposal(cluster_id)
        plan = propose.accept_cluster(self.catalog, cluster_id, p["person_id"],
                                      settings=self.settings)
        if plan.group_id is not None:
            self.history.append(("accept", plan.group_id))
        self.refresh()
        left = f"; {len(plan.excluded)} ruled out before stay unnamed" if plan.excluded else ""
        self.status.say(f"Named {_plural(plan.n_faces, 'face')} as "
                        f"{who(p['person_name'], p['person_id'])}{left} — undo?",
                        undo=plan.group_id is not None)
        return plan

    def reject(self, cluster_id: str) -> int:
        """Rule the proposed person out for the cluster's faces, then propose again (the
        cluster's next proposal is someone else, or none). Returns the faces ruled out."""
        p = self.proposal(cluster_id)
        n = propose.reject_cluster(self.catalog, cluster_id, p["person_id"])
        self.history.append(("reject", (cluster_id, int(p["person_id"]))))
        self.refresh()
        self.status.say(f"{who(p['person_name'], p['person_id'])} ruled out for "
                        f"{_plural(n, 'face')} of the cluster — undo?", undo=True)
        return n

    def undo(self) -> int:
        """Undo the last decision: an accept (the cluster is open again) or a "Not X" (the
        person may be proposed for it again); returns the faces restored."""
        if not self.history:
            raise FacelabError("nothing to undo")
        kind, what = self.history.pop()
        if kind == "accept":
            n = history.undo_group(self.catalog, what)
            said = f"Undone: {_plural(n, 'face')} unnamed again"
        else:
            n = propose.unreject_cluster(self.catalog, *what)
            said = f"Undone: the rejection of {_plural(n, 'face')} lifted"
        self.refresh()
        self.status.say(said, undo=bool(self.history))
        return n
