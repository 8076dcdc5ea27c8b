"""Faces without a person: the noise and singletons no cluster will bring to a label.

Clustering groups the faces that look alike; what is left -- a face seen once, a face too
unlike the others, noise -- never reaches the cluster gallery. This page lists those faces
(unassigned, in no active or skipped cluster, not marked "not a face":
:func:`facelab.store.faces.faces_without_person`), best quality first, and offers each one
its nearest people as one-click buttons ("Anna? 0.61"), the evidence line as the button's
tooltip (:func:`facelab.people.explain.format_proposal` through
:func:`facelab.widgets.proposals.face_proposal_text`).

The buttons come from the "who is this?" proposals (:func:`facelab.people.propose
.propose_faces`, source ``proposal``: the person of the face's nearest named faces and the
runner-up) and from any other pending suggestion of the face (find-more, auto-assignment's
band). A face on the page without one gets its proposal when the page is drawn; after each
action the page's proposals are made afresh (a name given changes whose faces are nearest).
A click on a proposal accepts its suggestion (:func:`facelab.people.review.accept`); a click
on a runner-up moves the face (:func:`facelab.people.naming.move_faces`). Selected tiles
can be named by typing a name (**Name selected**) or marked **Not a face**
(:func:`facelab.people.naming.mark_not_a_face`). Every action is undone with
:func:`facelab.people.history.undo_group` from the status line.

:func:`face_choices` and :func:`accept_choice` are shared with the photo view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, naming, propose, review
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.faces import faces_without_person
from facelab.widgets.gallery import person_names, plural
from facelab.widgets.proposals import face_proposal_text, who
from facelab.widgets.review import MAX_PAGE
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, StatusLine, TileGrid, button, w

#: Proposals offered per face: the best person, the runner-up, and one more suggestion.
CHOICES_PER_FACE = 3


@dataclass(frozen=True)
class Choice:
    """One one-click proposal for a face: the person, the score, the pending suggestion
    that holds it (None for a proposal's runner-up, which has none) and the evidence."""

    face_id: int
    person_id: int
    name: str | None
    score: float
    suggestion_id: int | None
    evidence: str

    @property
    def label(self) -> str:
        """The button text: "Anna? 0.61"."""
        return f"{who(self.name, self.person_id)}? {self.score:.2f}"


def face_choices(catalog: Catalog, space: str, face_ids: list[int],
                 settings: Settings | None = None, *, fresh: bool = False,
                 per_face: int = CHOICES_PER_FACE) -> dict[int, list[Choice]]:
    """The people proposed for each of ``face_ids``, best score first (at most
    ``per_face``): its pending suggestions of ``space`` (a proposal with its runner-up,
    suggestions of other sources). Faces with none get a proposal made first
    (:func:`~facelab.people.propose.propose_faces`); ``fresh`` makes the proposals of all
    of ``face_ids`` afresh."""
    ids = [int(f) for f in face_ids]
    if not ids:
        return {}
    wanted = set(ids)

    def pending() -> list[dict[str, Any]]:
        return [s for s in review.pending(catalog, space=space) if s["face_id"] in wanted]

    if fresh:
        propose.propose_faces(catalog, space, settings, face_ids=ids)
    found = pending()
    missing = sorted(wanted - {s["face_id"] for s in found})
    if missing and not fresh and propose.propose_faces(catalog, space, settings,
                                                       face_ids=missing):
        found = pending()
    everyone = naming.persons(catalog, include_merged=True)
    names = {p["person_id"]: p["name"] for p in everyone}
    live = {p["person_id"] for p in everyone if p["merged_into"] is None}
    out: dict[int, list[Choice]] = {f: [] for f in ids}
    for s in found:  # best score first
        face, options = s["face_id"], out[s["face_id"]]
        taken = {c.person_id for c in options}
        if s["person_id"] not in taken:
            text = (face_proposal_text(s, names) if s["source"] == propose.SOURCE else
                    f"suggested by {s['source']}, score {s['score']:.2f}")
            options.append(Choice(face, int(s["person_id"]), s["person_name"],
                                  float(s["score"]), int(s["suggestion_id"]), text))
            taken.add(s["person_id"])
        second = (s["evidence"] or {}).get("runner_up") if s["source"] == propose.SOURCE \
            else None
        if second and int(second["person_id"]) in live - taken:
            pid = int(second["person_id"])
            options.append(Choice(face, pid, names.get(pid), float(second["score"]), None,
                                  f"next after {who(s['person_name'], s['person_id'])}: "
                                  f"{who(names.get(pid), pid)} {second['score']:.2f}"))
    return {f: sorted(c, key=lambda c: -c.score)[:per_face] for f, c in out.items()}


def accept_choice(catalog: Catalog, choice: Choice, settings: Settings | None = None
                  ) -> int:
    """Name the face as the choice says: accept its suggestion, or (a runner-up) move the
    face to the person. Other pending suggestions of the face expire. Returns the event
    group (what undo reverts)."""
    if choice.suggestion_id is not None:
        report = review.accept(catalog, [choice.suggestion_id], settings=settings)
        if not report["accepted"]:
            raise FacelabError(f"face {choice.face_id} changed since it was proposed "
                               f"({report['reasons'].get(choice.suggestion_id)}); look again")
        group = int(report["group_id"])
    else:
        group = naming.move_faces(catalog, [choice.face_id], choice.person_id).group_id
    review.cleanup(catalog)
    return group


class NamingActions:
    """Name, "not a face" and undo for a page of faces to name (faces without a person, a
    photo's faces): one implementation, each page saying how it reads itself again
    (:meth:`reread`) and whether an action clears its selection.

    A page using it has ``catalog``, ``selected``, ``history`` (``(what, event group)``),
    ``name_box`` and ``status``.
    """

    catalog: Catalog
    selected: set[int]
    history: list[tuple[str, int]]
    name_box: Any
    status: StatusLine
    #: An action clears the selection (a page whose named faces leave it).
    clears_selection = True
    #: What to say when an action needs a selection and there is none.
    select_first = "select faces first"

    def reread(self) -> None:  # pragma: no cover - every page defines it
        """Read the page again after a change (fresh proposals included)."""
        raise NotImplementedError

    def _chosen(self, face_ids: tuple[int, ...]) -> list[int]:
        ids = [int(f) for f in face_ids] or sorted(self.selected)
        if not ids:
            raise FacelabError(self.select_first)
        return ids

    def _done(self, what: str, group: int, message: str) -> None:
        self.history.append((what, group))
        if self.clears_selection:
            self.selected = set()
        self.reread()
        self.status.say(message + " — undo?", undo=True)

    def name(self, name: str, *face_ids: int) -> list[int]:
        """Give faces (the selection, or ``face_ids``) to the person called ``name``
        (created when new); returns the faces named."""
        ids = self._chosen(face_ids)
        who_ = naming.clean_name(name)
        result = naming.move_faces(self.catalog, ids, who_)
        review.cleanup(self.catalog)
        self.name_box.value = ""
        self._done("name", result.group_id, f"Named {plural(len(result.changed), 'face')} "
                   f"as {who_}")
        return result.changed

    def not_a_face(self, *face_ids: int) -> list[int]:
        """Mark faces (the selection, or ``face_ids``) as not faces; returns them."""
        result = naming.mark_not_a_face(self.catalog, self._chosen(face_ids))
        self._done("not-a-face", result.group_id,
                   f"Marked {plural(len(result.changed), 'face')} as not a face")
        return result.changed

    def undo(self) -> int:
        """Undo the last action of the page; returns the faces restored."""
        if not self.history:
            raise FacelabError("nothing to undo")
        what, group = self.history.pop()
        n = history.undo_group(self.catalog, group)
        self.reread()
        self.status.say(f"Undone {what}: {plural(n, 'face')} as before",
                        undo=bool(self.history))
        return n


class UnnamedFaces(NamingActions, PagedPanel):
    """The faces without a person of one space, best quality first, with one-click
    proposals.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    space : str
        The embedding space whose faces are listed and proposed for.
    page_size : int, default=24
        Tiles per page, at most :data:`~facelab.widgets.review.MAX_PAGE`.
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.

    Attributes
    ----------
    faces : list of int
        The faces without a person, best quality first.
    choices : dict of int to list of Choice
        The proposals of the faces on the page.
    selected : set of int
        Selected faces (for Name selected / Not a face).
    history : list of (str, int)
        Undoable actions (what, event group), last one last.
    """

    _paged = "faces"

    def __init__(self, catalog: Catalog, space: str, *, page_size: int = MAX_PAGE,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None) -> None:
        if not 1 <= int(page_size) <= MAX_PAGE:
            raise ConfigError(f"page_size={page_size} must be between 1 and {MAX_PAGE}")
        self.catalog = catalog
        self.space = space
        self.page_size = int(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.faces: list[int] = []
        self.choices: dict[int, list[Choice]] = {}
        self.page = 0
        self.selected: set[int] = set()
        self.history: list[tuple[str, int]] = []
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.title = w.HTML()
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-unnamed-grid",
                             select_icon="check")
        self.prev_page_button = button("◀ page", "facelab-prev-page")
        self.next_page_button = button("page ▶", "facelab-next-page")
        self.prev_page_button.on_click(lambda _b: self.turn(-1))
        self.next_page_button.on_click(lambda _b: self.turn(+1))
        self.name_box = w.Combobox(placeholder="name…", options=[], ensure_option=False,
                                   layout=w.Layout(width="220px"))
        self.name_box.add_class("facelab-unnamed-name")
        self.name_button = button("Name selected", "facelab-name-selected-button", icon="user",
                                  style="primary")
        self.name_button.on_click(lambda _b: self._guard(lambda: self.name(
            self.name_box.value)))
        self.not_face_button = button("Not a face", "facelab-not-a-face", icon="ban")
        self.not_face_button.on_click(lambda _b: self._guard(self.not_a_face))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            self.title, self.grid.box,
            w.HBox([self.prev_page_button, self.next_page_button, self.name_box,
                    self.name_button, self.not_face_button]),
            self.status.box])
        self.widget.add_class("facelab-unnamed")

    def _render(self) -> None:
        n = len(self.faces)
        self.title.value = (f"<b>{plural(n, 'face')} without a person</b> (in no cluster) · "
                            f"page {self.page + 1} of {self.pages}" if n else
                            "<b>Every face is named or in a cluster</b>")
        page = self.page_faces
        actions = {f: [(c.label, c.evidence, lambda c=c: self._guard(lambda: self.accept(c)))
                       for c in self.choices.get(f, [])] for f in page}
        self.grid.show([(f, f, f"#{f}") for f in page], self.selected, actions=actions)
        self._render_buttons()
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    def _render_buttons(self) -> None:
        k = len(self.selected)
        self.name_button.description = f"Name {plural(k, 'face')} as" if k else "Name selected"
        self.name_button.disabled = self.not_face_button.disabled = not k

    # ------------------------------------------------------------------ state
    @property
    def page_faces(self) -> list[int]:
        lo = self.page * self.page_size
        return self.faces[lo:lo + self.page_size]

    def refresh(self, *, fresh: bool = False) -> None:
        """Re-read the faces without a person and the page's proposals (``fresh``: made
        afresh), keeping the page and the selected faces still listed."""
        self.faces = faces_without_person(self.catalog, self.space)
        self.page = max(0, min(self.page, self.pages - 1))
        self.selected &= set(self.page_faces)
        self.name_box.options = person_names(self.catalog)
        self.choices = face_choices(self.catalog, self.space, self.page_faces, self.settings,
                                    fresh=fresh)
        self._render()

    def turn(self, pages: int) -> None:
        """Move ``pages`` pages (the selection is of one page, so it is cleared)."""
        self.selected = set()
        self.page = max(0, min(self.page + int(pages), self.pages - 1))
        self.refresh()

    def select(self, face_id: int, selected: bool = True) -> None:
        """Select a face of the page (to name it or mark it), or unselect it."""
        fid = int(face_id)
        if fid not in self.page_faces:
            raise FacelabError(f"face {fid} is not on this page")
        self._mark(fid, selected)
        self._render_buttons()

    def reread(self) -> None:
        self.refresh(fresh=True)

    # ------------------------------------------------------------------ actions
    def accept(self, choice: Choice | tuple[int, int]) -> int:
        """Name a face as one of its proposals: a :class:`Choice`, or (face id, person id)
        of one on show. Returns the event group."""
        if not isinstance(choice, Choice):
            face, person = (int(x) for x in choice)
            choice = next((c for c in self.choices.get(face, []) if c.person_id == person),
                          None) or Choice(face, person, None, 0.0, None, "")
        group = accept_choice(self.catalog, choice, self.settings)
        name = who(choice.name, choice.person_id)
        self._done("name", group, f"Named face {choice.face_id} as {name}")
        return group

