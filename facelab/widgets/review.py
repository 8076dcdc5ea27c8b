"""The suggestion review: per person, pages of suggested faces to accept or reject.

Suggestions (:mod:`facelab.people.suggest`) are faces facelab thinks belong to a person. The review
shows one person's queue, best score first, in pages of at most 24 tiles captioned with
their scores: small enough to take in at a glance, which is what makes "accept all" safe.
Clicking a tile selects it; **Reject selected** rules those faces out for the person
(:func:`facelab.people.review.reject`), **Accept all** accepts the rest of the page
(:func:`facelab.people.review.accept`; selected tiles are left alone, so the two buttons never
contradict each other). **Undo** reverts the last of them, so the queue looks as before:

* an accept is undone with :func:`facelab.people.history.undo_group` on the accept's event group
  (the faces are unassigned exactly as they were), then :func:`facelab.people.review.requeue`
  puts the accepted suggestions -- and those the accept made moot -- back in the queue;
* a reject is undone with :func:`facelab.people.review.unreject`: the rejections it recorded
  are lifted and the suggestions are pending again.

What to put back is read before and after the action: the rejections a reject added
(:mod:`facelab.store.rejections`), and the suggestions an accept made moot
(:mod:`facelab.store.suggestions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, naming, review
from facelab.people.suggest import follow_merges
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.rejections import rejected_pairs
from facelab.store.suggestions import pending_counts, superseded_by
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, Picker, StatusLine, TileGrid, button, w

#: Most tiles on one review page: the eye can check 24 faces at once; more and "accept all"
#: starts accepting faces nobody looked at.
MAX_PAGE = 24


@dataclass
class Decision:
    """One undoable accept or reject of a review page, with what its undo puts back: the
    accept's event group and the suggestions to requeue (those accepted and those the accept
    made moot), or the rejections a reject added."""

    kind: str                                   # accept | reject
    suggestion_ids: list[int]
    group_id: int | None = None
    requeue: list[int] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)


def review_controls(panel: Any, guard: Callable[[Callable[[], Any]], None]) -> w.HBox:
    """The buttons of a review page -- Accept all (the unselected tiles), Reject selected,
    page turns -- set on ``panel`` as ``accept_button``, ``reject_button``,
    ``prev_page_button``, ``next_page_button`` and wired to its ``accept_all``,
    ``reject_selected`` and ``turn``; ``guard(action)`` runs an action and shows its
    error."""
    panel.accept_button = button("Accept all", "facelab-accept", icon="check",
                                 style="success")
    panel.reject_button = button("Reject selected", "facelab-reject", icon="times",
                                 style="danger")
    panel.prev_page_button = button("◀ page", "facelab-prev-page")
    panel.next_page_button = button("page ▶", "facelab-next-page")
    panel.accept_button.on_click(lambda _b: guard(panel.accept_all))
    panel.reject_button.on_click(lambda _b: guard(panel.reject_selected))
    panel.prev_page_button.on_click(lambda _b: panel.turn(-1))
    panel.next_page_button.on_click(lambda _b: panel.turn(+1))
    return w.HBox([panel.accept_button, panel.reject_button, panel.prev_page_button,
                   panel.next_page_button])


def label_review_buttons(panel: Any) -> None:
    """Say on ``panel``'s review buttons what they would do to its page: "Accept all 24" /
    "Accept 21" (the unselected), "Reject 3 selected"; disabled when they would do nothing."""
    unselected = sum(s["suggestion_id"] not in panel.selected for s in panel.page_items)
    panel.accept_button.description = (f"Accept {unselected}" if panel.selected
                                       else f"Accept all {unselected}")
    panel.accept_button.disabled = unselected == 0
    panel.reject_button.description = f"Reject {len(panel.selected)} selected"
    panel.reject_button.disabled = not panel.selected


def accept_page(catalog: Catalog, suggestion_ids: list[int], *, snowball: bool = False,
                settings: Settings | None = None) -> tuple[dict[str, Any], Decision | None]:
    """Accept suggestions of a page: ``review.accept``'s report and the decision that undoes
    it (None when nothing was accepted)."""
    if not suggestion_ids:
        raise FacelabError("nothing to accept on this page")
    report = review.accept(catalog, suggestion_ids, snowball=snowball, settings=settings)
    if not report["accepted"]:
        return report, None
    return report, Decision("accept", list(report["accepted"]), group_id=report["group_id"],
                            requeue=list(report["accepted"]) + superseded_by(
                                catalog, report["accepted"]))


def reject_page(catalog: Catalog, items: list[dict[str, Any]]) -> tuple[int, Decision]:
    """Reject these suggestions (``review.pending`` rows): how many, and the decision that
    undoes it (the rejections it added, read before and after)."""
    if not items:
        raise FacelabError("select the wrong faces first")
    faces = [s["face_id"] for s in items]
    with catalog.read() as con:
        before = rejected_pairs(con, faces)
    ids = [s["suggestion_id"] for s in items]
    n = review.reject(catalog, ids)
    with catalog.read() as con:
        added = sorted(rejected_pairs(con, faces) - before)
    return n, Decision("reject", ids, pairs=added)


def undo_decision(catalog: Catalog, decision: Decision) -> int:
    """Undo an accept (the faces unassigned as they were, its suggestions requeued) or a
    reject (its rejections lifted, the suggestions pending again); returns how many
    suggestions are back in the queue."""
    if decision.kind == "accept":
        history.undo_group(catalog, decision.group_id)
        return review.requeue(catalog, decision.requeue)
    return review.unreject(catalog, decision.suggestion_ids, decision.pairs)


# --------------------------------------------------------------------------- the widget


class SuggestionReview(PagedPanel):
    """Review the pending suggestions of one person at a time.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    person : int or str, optional
        Whose queue to show first (id or name); default: the person with most pending.
    space : str, optional
        Only suggestions of this embedding space.
    page_size : int, default=24
        Tiles per page, at most :data:`MAX_PAGE`.
    snowball : bool, default=False
        Accepting also runs ``find_more`` for the person (``review.accept(snowball=True)``).
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.

    Attributes
    ----------
    person_id : int or None
        The person on show.
    items : list of dict
        Their pending suggestions (``review.pending`` rows), best score first.
    selected : set of int
        Selected suggestion ids (to reject).
    history : list
        Undoable actions, last one last.
    """

    _paged = "items"

    def __init__(self, catalog: Catalog, person: int | str | None = None, *,
                 space: str | None = None, page_size: int = MAX_PAGE, snowball: bool = False,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None) -> None:
        if not 1 <= int(page_size) <= MAX_PAGE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE}: a "
                              "review page must be small enough to check at a glance")
        self.catalog = catalog
        self.space = space
        self.page_size = int(page_size)
        self.snowball = snowball
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.person_id: int | None = None
        self.items: list[dict[str, Any]] = []
        self.page = 0
        self.selected: set[int] = set()
        self.history: list[Decision] = []
        self._names: dict[int, str | None] = {}
        self._build()
        first = (naming.resolve_person(catalog, person, create=False)
                 if person is not None else None)
        self.refresh(first)

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.person_box = Picker(self.show, "facelab-review-person", description="Person")
        self.title = w.HTML()
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-review-grid")
        controls = review_controls(self, self._guard)
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([w.HBox([self.person_box.box, self.title]), self.grid.box,
                              controls, self.status.box])
        self.widget.add_class("facelab-review")

    def _render(self) -> None:
        page = self.page_items
        name = self._names.get(self.person_id) or f"person {self.person_id}"
        self.title.value = (f"<b>{len(self.items)} suggestion"
                            f"{'s' if len(self.items) != 1 else ''} for {name}</b> · page "
                            f"{self.page + 1} of {self.pages}" if self.person_id is not None
                            else "<b>No suggestions to review</b>")
        self.grid.show([(s["suggestion_id"], s["face_id"], f"{s['score']:.3f}") for s in page],
                       self.selected)
        self._render_buttons()
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    # ------------------------------------------------------------------ state
    @property
    def page_items(self) -> list[dict[str, Any]]:
        lo = self.page * self.page_size
        return self.items[lo:lo + self.page_size]

    def queue(self) -> list[tuple[str, int]]:
        """(label, person id) of everyone with pending suggestions, most pending first."""
        everyone = naming.persons(self.catalog, include_merged=True)
        merged = {p["person_id"]: p["merged_into"] for p in everyone}
        counts: dict[int, int] = {}
        for pid, n in pending_counts(self.catalog, self.space).items():
            who = follow_merges(pid, merged)  # a merged person's queue is their target's
            if who is not None:
                counts[who] = counts.get(who, 0) + n
        self._names = {p["person_id"]: p["name"] for p in everyone if p["merged_into"] is None}
        order = sorted(counts, key=lambda p: (-counts[p], p))
        return [(f"{self._names.get(p) or f'person {p}'} ({counts[p]})", p) for p in order
                if p in self._names]

    def refresh(self, person_id: int | None = None) -> None:
        """Re-read who has suggestions and show ``person_id`` (even without suggestions);
        default: the person on show while they have some left, else the one with most."""
        options = self.queue()
        ids = [p for _, p in options]
        if person_id is None:
            keep = self.person_id if self.person_id in ids else (ids[0] if ids else None)
        else:
            keep = int(person_id)
        self.person_box.set(options, keep)
        self.show(keep, page=self.page if keep == self.person_id else 0)

    def show(self, person_id: int | None, *, page: int = 0) -> None:
        """Show the pending suggestions of ``person_id`` (clears the selection)."""
        self.person_id = None if person_id is None else int(person_id)
        self.items = ([] if self.person_id is None else
                      review.pending(self.catalog, person_id=self.person_id,
                                      space=self.space))
        self.page = max(0, min(page, self.pages - 1))
        self.selected = set()
        self.person_box.set(self.person_box.box.options, self.person_id)
        self._render()

    def turn(self, pages: int) -> None:
        """Move ``pages`` pages; the selection is of one page's suggestions, so it is cleared."""
        self.selected = set()
        super().turn(pages)

    def select(self, suggestion_id: int, selected: bool = True) -> None:
        """Select a suggestion of the page (to reject it), or unselect it."""
        sid = int(suggestion_id)
        if sid not in {s["suggestion_id"] for s in self.page_items}:
            raise FacelabError(f"suggestion {sid} is not on this page")
        self._mark(sid, selected)
        self._render_buttons()

    def _render_buttons(self) -> None:
        label_review_buttons(self)

    # ------------------------------------------------------------------ actions
    def accept_all(self) -> dict[str, Any]:
        """Accept every suggestion of the page that is not selected; returns
        ``review.accept``'s report."""
        report, decision = accept_page(
            self.catalog, [s["suggestion_id"] for s in self.page_items
                           if s["suggestion_id"] not in self.selected],
            snowball=self.snowball, settings=self.settings)
        if decision is not None:
            self.history.append(decision)
        keep = self.selected
        self.refresh()
        self.selected = {s for s in keep if s in {i["suggestion_id"] for i in self.page_items}}
        self.grid.sync(self.selected)
        self._render_buttons()
        n = len(report["accepted"])
        extra = f"; {len(report['conflicts'])} changed since and expired" if report[
            "conflicts"] else ""
        snow = f"; {report['snowball']} new suggestions" if report["snowball"] else ""
        self.status.say(f"Accepted {n} face{'s' if n != 1 else ''}{extra}{snow} — undo?",
                        undo=bool(report["accepted"]))
        return report

    def reject_selected(self) -> int:
        """Reject the selected suggestions (never suggested for this person again)."""
        n, decision = reject_page(self.catalog, [s for s in self.page_items
                                                 if s["suggestion_id"] in self.selected])
        self.history.append(decision)
        self.refresh()
        self.status.say(f"Rejected {n} face{'s' if n != 1 else ''} — undo?", undo=n > 0)
        return n

    def undo(self) -> int:
        """Undo the last accept or reject; its suggestions are back in the queue. Returns
        the number of suggestions requeued."""
        if not self.history:
            raise FacelabError("nothing to undo")
        last = self.history.pop()
        n = undo_decision(self.catalog, last)
        self.refresh()
        self.status.say(f"Undone {last.kind}: {n} suggestion{'s' if n != 1 else ''} back in "
                        "the queue", undo=bool(self.history))
        return n

