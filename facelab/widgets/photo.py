"""The source photo of a face: every face found on it, boxed and numbered, to name in place.

A face alone in a tile is sometimes hard to name; on its photo, beside the people around
it, it rarely is. :class:`PhotoView` shows the photo a face was found on
(:meth:`~facelab.widgets.thumbs.ThumbCache.photo`: at most 900 px, read from the catalog's
``files.path`` as the tiles are) with a box around each face the same model found there,
numbered, in the colour of its state -- green named, orange unnamed, grey "not a face", red
selected -- and below it one tile per face, captioned with its number and name. Clicking a
tile selects that face (the face the photo was opened from is selected when it opens);
**Name selected** gives the selected faces to a person by name
(:func:`facelab.people.naming.move_faces`), **Not a face** marks them
(:func:`facelab.people.naming.mark_not_a_face`), **Remove name** takes them from their
person (:func:`facelab.people.naming.remove_faces`), and an unnamed face's tile carries its
one-click proposals (:func:`facelab.widgets.unnamed.face_choices`). Each is undone from the
status line (:func:`facelab.people.history.undo_group`).

ipywidgets' Image sends no click position to the kernel, so a face is chosen by its tile
(or its number), not by clicking the box on the photo. Every face tile of the labeling app
has a photo button that opens this page (:class:`~facelab.widgets.LabelingApp`).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.people import naming
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.faces import NOT_A_FACE, faces_on_asset, faces_on_photos
from facelab.store.persons import face_states
from facelab.widgets.gallery import person_names, plural
from facelab.widgets.proposals import who
from facelab.widgets.thumbs import PHOTO_SIDE, ThumbCache
from facelab.widgets.unnamed import Choice, NamingActions, accept_choice, face_choices
from facelab.widgets.view import Panel, StatusLine, TileGrid, button, w

#: Box colours by state.
COLOURS = {"selected": (220, 30, 30), "named": (40, 160, 60), "unnamed": (240, 150, 0),
           "not_a_face": (150, 150, 150)}


class PhotoView(NamingActions, Panel):
    """The photo of a face with all its faces boxed; name, mark or unname them in place.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    face_id : int, optional
        Open the photo of this face (else the page waits for :meth:`show`).
    space : str, optional
        The embedding space proposals are made in (default: the faces' detector space).
    max_side : int, default=900
        Longer side of the photo as shown, in pixels.
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.

    Attributes
    ----------
    face_id : int or None
        The face the photo was opened from.
    asset_id : int or None
        The photo on show.
    faces : list of int
        Its faces (found by the opening face's model), numbered 1.. in this order.
    people : dict of int to (int or None, str or None)
        Each face's person id and name.
    marked : set of int
        Its faces marked "not a face".
    selected : set of int
        Selected faces.
    why : str or None
        Why the photo cannot be shown (``no_photo``, ``missing``, ...), None when it is.
    """

    def __init__(self, catalog: Catalog, face_id: int | None = None, *,
                 space: str | None = None, max_side: int = PHOTO_SIDE,
                 thumbs: ThumbCache | None = None, settings: Settings | None = None) -> None:
        self.catalog = catalog
        self.space = space
        self.max_side = int(max_side)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.face_id: int | None = None
        self.asset_id: int | None = None
        self.path: str | None = None
        self.faces: list[int] = []
        self.people: dict[int, tuple[int | None, str | None]] = {}
        self.marked: set[int] = set()
        self.choices: dict[int, list[Choice]] = {}
        self.selected: set[int] = set()
        self.why: str | None = None
        self.history: list[tuple[str, int]] = []
        self._space: str | None = None
        self._build()
        if face_id is not None:
            self.show(face_id)
        else:
            self._render()

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.title = w.HTML()
        self.face_box = w.Text(placeholder="face id", layout=w.Layout(width="120px"))
        self.open_button = button("Open photo", "facelab-open-photo", icon="image")
        self.open_button.on_click(lambda _b: self._guard(self._open_typed))
        self.image = w.Image(format="jpeg", layout=w.Layout(max_width="100%"))
        self.image.add_class("facelab-photo-image")
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-photo-faces",
                             select_icon="check")
        self.name_box = w.Combobox(placeholder="name…", options=[], ensure_option=False,
                                   layout=w.Layout(width="220px"))
        self.name_box.add_class("facelab-photo-name")
        self.name_button = button("Name selected", "facelab-photo-name-button", icon="user",
                                  style="primary")
        self.name_button.on_click(lambda _b: self._guard(lambda: self.name(
            self.name_box.value)))
        self.not_face_button = button("Not a face", "facelab-not-a-face", icon="ban")
        self.not_face_button.on_click(lambda _b: self._guard(self.not_a_face))
        self.unname_button = button("Remove name", "facelab-photo-unname", icon="user-times")
        self.unname_button.on_click(lambda _b: self._guard(self.remove_name))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            w.HBox([self.title, self.face_box, self.open_button]), self.image, self.grid.box,
            w.HBox([self.name_box, self.name_button, self.not_face_button,
                    self.unname_button]),
            self.status.box])
        self.widget.add_class("facelab-photo-view")

    def _open_typed(self) -> None:
        typed = self.face_box.value.strip().lstrip("#")
        if not typed.isdigit():
            raise FacelabError(f"{self.face_box.value!r} is not a face id")
        self.show(int(typed))

    def state(self, face_id: int) -> str:
        """``named``, ``unnamed`` or ``not_a_face``."""
        if face_id in self.marked:
            return "not_a_face"
        return "named" if self.people.get(face_id, (None, None))[0] is not None else "unnamed"

    def caption(self, number: int, face_id: int) -> str:
        """A tile's caption: its number on the photo and who it is ("2. Anna", "3. ?")."""
        pid, name = self.people.get(face_id, (None, None))
        if face_id in self.marked:
            return f"{number}. not a face"
        return f"{number}. {who(name, pid) if pid is not None else '?'}"

    def _render(self) -> None:
        if self.asset_id is None:
            self.title.value = "<b>No photo open</b> (a face tile's photo button opens one)"
            self.image.value = b""
            self.grid.show([], set())
            self._render_buttons()
            return
        numbered = list(enumerate(self.faces, start=1))
        colours = [COLOURS["selected" if f in self.selected else self.state(f)]
                   for _, f in numbered]
        jpeg, self.why = self.thumbs.photo(self.faces, [str(i) for i, _ in numbered], colours,
                                           max_side=self.max_side)
        self.image.value = jpeg
        named = sum(self.state(f) == "named" for f in self.faces)
        where = html.escape(Path(self.path).name) if self.path else "no file on record"
        seen = f" · <i>photo not shown: {html.escape(self.why)}</i>" if self.why else ""
        self.title.value = (f"<b>Photo {self.asset_id}</b> · {where} · "
                            f"{plural(len(self.faces), 'face')}, {named} named{seen}")
        actions = {f: [(c.label, c.evidence, lambda c=c: self._guard(lambda: self.accept(c)))
                       for c in self.choices.get(f, [])] for f in self.faces}
        self.grid.show([(f, f, self.caption(i, f)) for i, f in numbered], self.selected,
                       actions=actions)
        self._render_buttons()

    def _render_buttons(self) -> None:
        k = len(self.selected)
        self.name_button.description = f"Name {plural(k, 'face')} as" if k else "Name selected"
        self.name_button.disabled = self.not_face_button.disabled = not k
        self.unname_button.disabled = not any(self.state(f) == "named" for f in self.selected)

    # ------------------------------------------------------------------ state
    def show(self, face_id: int, *, keep_selection: bool = False) -> None:
        """Open the photo of ``face_id``: its faces found by the same model, that face
        selected (``keep_selection``: the faces still selected stay so)."""
        fid = int(face_id)
        found = faces_on_photos(self.catalog, [fid]).get(fid)
        if found is None:
            raise FacelabError(f"no face {fid} in the catalog")
        self.face_id, self.asset_id, self.path = fid, found.asset_id, found.path
        self._space = self.space or found.space
        self.faces = [f.face_id for f in faces_on_asset(self.catalog, found.asset_id,
                                                        found.space)]
        self.selected = (self.selected & set(self.faces)) if keep_selection else {fid}
        self.refresh_state()

    def refresh(self) -> None:
        """Re-read the photo's faces and who they are (the selection is kept)."""
        if self.face_id is None:
            self._render()
            return
        try:
            self.show(self.face_id, keep_selection=True)
        except FacelabError:  # the face is gone (re-detected away): nothing to show
            self.face_id = self.asset_id = None
            self.faces, self.selected = [], set()
            self._render()

    def refresh_state(self, *, fresh: bool = False) -> None:
        """Re-read who each face is and the unnamed faces' proposals; draw the photo."""
        ids = self.faces
        with self.catalog.read() as con:
            st = face_states(con, np.asarray(ids, np.int64), np.full(len(ids), -1, np.int64))
        names = {p["person_id"]: p["name"] for p in naming.persons(self.catalog)}
        self.people = {f: ((int(p), names.get(int(p))) if p >= 0 else (None, None))
                       for f, p in zip(ids, st.person.tolist(), strict=True)}
        self.marked = {f for f, by in zip(ids, st.assigned_by, strict=True) if by == NOT_A_FACE}
        unnamed = [f for f in ids if self.state(f) == "unnamed"]
        self.choices = (face_choices(self.catalog, self._space, unnamed, self.settings,
                                     fresh=fresh) if unnamed and self._space else {})
        self.name_box.options = person_names(self.catalog)
        self._render()

    def select(self, face_id: int, selected: bool = True) -> None:
        """Select a face of the photo (to name, mark or unname it), or unselect it."""
        fid = int(face_id)
        if fid not in self.faces:
            raise FacelabError(f"face {fid} is not on this photo")
        if selected:
            self.selected.add(fid)
        else:
            self.selected.discard(fid)
        self.grid.sync(self.selected)
        self._render()

    clears_selection = False  # the photo's faces stay on it: the selection stays too
    select_first = "select a face of the photo first"

    def reread(self) -> None:
        self.refresh_state(fresh=True)

    # ------------------------------------------------------------------ actions
    def accept(self, choice: Choice) -> int:
        """Name a face as one of its proposals; returns the event group."""
        group = accept_choice(self.catalog, choice, self.settings)
        self._done("name", group, f"Named face {choice.face_id} as "
                   f"{who(choice.name, choice.person_id)}")
        return group

    def remove_name(self, *face_ids: int) -> list[int]:
        """Take faces (the selection, or ``face_ids``) from their person (never proposed
        for them again); returns them."""
        result = naming.remove_faces(self.catalog, self._chosen(face_ids))
        self._done("remove", result.group_id,
                   f"Removed the name of {plural(len(result.changed), 'face')}")
        return result.changed

