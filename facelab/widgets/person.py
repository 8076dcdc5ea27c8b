"""The person page: one person's faces and prototypes, and everything one does to a person.

Faces come in pages of tiles (best quality first); the prototypes -- the faces that stand
for the person when facelab assigns and suggests -- in a row above, pinned ones marked 📌.
Clicking tiles selects faces; the buttons act on the selection or on the person, each
through the function the CLI uses:

=====================  ==========================================================
rename                 :func:`facelab.people.naming.rename_person`
hide / show            :func:`facelab.people.naming.hide_person`
merge into …           :func:`facelab.people.naming.merge_persons` (the page follows)
not this person        :func:`facelab.people.naming.remove_faces` (unassigned + rejected)
pin / unpin            :func:`~facelab.people.prototypes.pin` / ``unpin``
explain                :func:`facelab.people.explain.explain` of any face
move to …              :func:`facelab.people.naming.move_faces` (another person, or a
                       new one by name)
not a face             :func:`facelab.people.naming.mark_not_a_face`
undo                   :func:`facelab.people.history.undo_group` of the last action
=====================  ==========================================================

Undo covers rename, hide, merge, "not this person", move and "not a face": each writes an
event group, and the page keeps the group ids it made. Pinning is a prototype flag, not an
assignment, so Unpin is its undo.

**outliers first** (off by default) orders the person's faces farthest from their mean
first (:func:`facelab.people.clusters.outlier_order`, per embedding space), each tile saying
its similarity and outlier rank: a person's wrong faces are among their outliers.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import history, naming, prototypes, review
from facelab.people.clusters import outlier_order
from facelab.people.explain import explain, format_explanation
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.events import last_person_event_group
from facelab.store.faces import faces_on_photos
from facelab.store.persons import faces_of_person
from facelab.store.prototypes import person_prototypes
from facelab.widgets.gallery import outlier_captions, person_names, plural
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, Picker, StatusLine, TileGrid, button, w


@dataclass
class _Done:
    what: str
    group_id: int
    person_id: int        # the person to show after undoing


def _label(p: dict[str, Any]) -> str:
    name = p["name"] or f"person {p['person_id']}"
    hidden = ", hidden" if p["hidden"] else ""
    return f"{name} (#{p['person_id']}, {p['n_faces']} faces{hidden})"


class PersonPage(PagedPanel):
    """One person: faces, prototypes, rename, hide, merge (+ undo), not-this-person, pin,
    explain.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    person : int or str, optional
        Who to show first (id or name); default: the person with most faces.
    page_size : int, default=48
        Face tiles per page.
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.
    outliers_first : bool, default=False
        Faces farthest from the person's mean first (else best quality first).

    Attributes
    ----------
    person_id : int or None
        The person on show.
    faces : list of int
        Their faces, best quality first (or outliers first).
    similarity : dict of int to float
        With ``outliers_first``: each face's similarity to the person's mean in its space.
    protos : list of dict
        Their prototypes (``face_id, space, role, pinned``), pinned first.
    selected : set of int
        Selected face ids.
    explanation : str
        Text of the last :meth:`explain` call.
    """

    _paged = "faces"

    def __init__(self, catalog: Catalog, person: int | str | None = None, *,
                 page_size: int = 48, thumbs: ThumbCache | None = None,
                 settings: Settings | None = None, outliers_first: bool = False) -> None:
        if not 1 <= int(page_size) <= 500:
            raise ConfigError(f"page_size={page_size} must be between 1 and 500 faces")
        self.catalog = catalog
        self.page_size = int(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.person_id: int | None = None
        self.faces: list[int] = []
        self.similarity: dict[int, float] = {}
        self.protos: list[dict[str, Any]] = []
        self.page = 0
        self.selected: set[int] = set()
        self.explanation = ""
        self.history: list[_Done] = []
        self._people: list[dict[str, Any]] = []
        self._build()
        self.outliers_button.value = bool(outliers_first)
        first = (naming.resolve_person(catalog, person, create=False)
                 if person is not None else None)
        self.refresh(first)

    # ------------------------------------------------------------------ view
    def _build(self) -> None:
        self.person_box = Picker(self.show, "facelab-person", description="Person",
                                 width="420px")
        self.title = w.HTML()
        self.proto_grid = TileGrid(self.thumbs, self.select, css="facelab-prototypes",
                                   select_icon="check")
        self.grid = TileGrid(self.thumbs, self.select, css="facelab-person-faces",
                             select_icon="check")
        self.prev_page_button = button("◀ page", "facelab-prev-page")
        self.next_page_button = button("page ▶", "facelab-next-page")
        self.prev_page_button.on_click(lambda _b: self.turn(-1))
        self.next_page_button.on_click(lambda _b: self.turn(+1))
        self.name_box = w.Text(placeholder="new name", layout=w.Layout(width="200px"))
        self.name_box.add_class("facelab-rename-name")
        self.rename_button = button("Rename", "facelab-rename", icon="pencil")
        self.hide_button = button("Hide", "facelab-hide", icon="eye-slash")
        self.merge_box = Picker(None, "facelab-merge-target", width="300px")
        self.merge_button = button("Merge into", "facelab-merge", icon="compress")
        self.remove_button = button("Not this person", "facelab-not-this", icon="user-times",
                                    style="danger")
        self.pin_button = button("Pin", "facelab-pin", icon="thumb-tack")
        self.unpin_button = button("Unpin", "facelab-unpin")
        self.explain_button = button("Explain", "facelab-explain", icon="question")
        self.explain_id = w.Text(placeholder="face id (or select)",
                                 layout=w.Layout(width="150px"))
        self.rename_button.on_click(lambda _b: self._guard(lambda: self.rename(
            self.name_box.value)))
        self.hide_button.on_click(lambda _b: self._guard(lambda: self.hide(not self.hidden)))
        self.merge_button.on_click(lambda _b: self._guard(lambda: self.merge_into(
            self.merge_box.value)))
        self.remove_button.on_click(lambda _b: self._guard(self.not_this_person))
        self.pin_button.on_click(lambda _b: self._guard(self.pin))
        self.unpin_button.on_click(lambda _b: self._guard(self.unpin))
        self.explain_button.on_click(lambda _b: self._guard(self._explain_clicked))
        self.explain_out = w.HTML()
        self.explain_out.add_class("facelab-explanation")
        self.outliers_button = w.ToggleButton(value=False, description="outliers first",
                                              tooltip="faces farthest from the person's "
                                              "mean first (off: best quality first)")
        self.outliers_button.add_class("facelab-outliers")
        self.outliers_button.observe(lambda _c: self.show(self.person_id), names="value")
        self.move_name = w.Combobox(placeholder="move selected to…", options=[],
                                    ensure_option=False, layout=w.Layout(width="200px"))
        self.move_name.add_class("facelab-move-name")
        self.move_button = button("Move", "facelab-move", icon="share")
        self.move_button.on_click(lambda _b: self._guard(lambda: self.move_to(
            self.move_name.value)))
        self.not_face_button = button("Not a face", "facelab-not-a-face", icon="ban")
        self.not_face_button.on_click(lambda _b: self._guard(self.not_a_face))
        self.status = StatusLine(lambda: self._guard(self.undo))
        self.widget = w.VBox([
            w.HBox([self.person_box.box, self.title, self.outliers_button]),
            w.HTML("<b>Prototypes</b> (📌 pinned)"), self.proto_grid.box,
            w.HTML("<b>Faces</b>"), self.grid.box,
            w.HBox([self.prev_page_button, self.next_page_button, self.remove_button,
                    self.pin_button, self.unpin_button, self.explain_id,
                    self.explain_button]),
            w.HBox([self.move_name, self.move_button, self.not_face_button]),
            w.HBox([self.name_box, self.rename_button, self.hide_button, self.merge_box.box,
                    self.merge_button]),
            self.status.box, self.explain_out])
        self.widget.add_class("facelab-person-page")

    def _explain_clicked(self) -> None:
        typed = self.explain_id.value.strip()
        if typed:
            if not typed.lstrip("#").isdigit():
                raise FacelabError(f"{typed!r} is not a face id")
            ids = [int(typed.lstrip("#"))]
        else:
            ids = sorted(self.selected)[:5]
        if not ids:
            raise FacelabError("select a face or type a face id to explain")
        self.explain(*ids)

    def _render(self) -> None:
        pinned = {p["face_id"] for p in self.protos if p["pinned"]}
        roles: dict[int, list[str]] = {}
        for p in self.protos:
            roles.setdefault(p["face_id"], []).append(p["role"])
        self.proto_grid.show([(f, f, f"{'📌' if f in pinned else ''}{'/'.join(r)}")
                              for f, r in roles.items()], self.selected)
        lo = self.page * self.page_size
        page = self.faces[lo:lo + self.page_size]
        captions = (outlier_captions(self.faces, self.similarity) if self.outliers_first
                    else {f: f"#{f}" for f in page})
        self.grid.show([(f, f, f"{'📌' if f in pinned else ''}{captions[f]}") for f in page],
                       self.selected)
        info = self._info()
        self.title.value = ("<b>No people yet</b>" if info is None else
                            f"<b>{html.escape(_label(info))}</b> · page {self.page + 1} of "
                            f"{self.pages}")
        self.hide_button.description = "Show" if self.hidden else "Hide"
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    def _info(self) -> dict[str, Any] | None:
        return next((p for p in self._people if p["person_id"] == self.person_id), None)

    # ------------------------------------------------------------------ state
    @property
    def outliers_first(self) -> bool:
        """Whether faces come farthest from the person's mean first."""
        return bool(self.outliers_button.value)

    @property
    def hidden(self) -> bool:
        info = self._info()
        return bool(info and info["hidden"])

    def refresh(self, person_id: int | None = None) -> None:
        """Re-read the people and show ``person_id`` (default: the one on show, else the
        person with most faces)."""
        self._people = naming.persons(self.catalog)
        ids = [p["person_id"] for p in self._people]
        keep = person_id if person_id is not None else self.person_id
        keep = keep if keep in ids else (ids[0] if ids else None)
        self.person_box.set([(_label(p), p["person_id"]) for p in self._people], keep)
        self.show(keep, page=self.page if keep == self.person_id else 0)

    def show(self, person_id: int | None, *, page: int = 0) -> None:
        """Show a person's faces and prototypes (clears the selection)."""
        self.person_id = None if person_id is None else int(person_id)
        self.faces, self.protos, self.similarity = [], [], {}
        if self.person_id is not None:
            with self.catalog.read() as con:
                self.faces = faces_of_person(con, self.person_id, best_first=True).tolist()
            self.protos = person_prototypes(self.catalog, self.person_id)
            if self.outliers_first:
                self._order_outliers_first()
        self.move_name.options = person_names(self.catalog)
        self.page = max(0, min(page, self.pages - 1))
        self.selected = set()
        self.person_box.set(self.person_box.box.options, self.person_id)
        # nobody chosen until the user picks: a stray click must not merge into anyone
        self.merge_box.set([("merge into …", None)] + [
            (_label(p), p["person_id"]) for p in self._people
            if p["person_id"] != self.person_id], None)
        self._render()

    def _order_outliers_first(self) -> None:
        """Faces by similarity to the person's mean in their space, lowest first."""
        by_space: dict[str, list[int]] = {}
        for f, info in faces_on_photos(self.catalog, self.faces).items():
            by_space.setdefault(info.space, []).append(f)
        for space, ids in by_space.items():
            found, sims = outlier_order(self.catalog, space, ids)
            self.similarity.update(zip(found.tolist(), sims.tolist(), strict=True))
        self.faces.sort(key=lambda f: (self.similarity.get(f, 2.0), f))

    def select(self, face_id: int, selected: bool = True) -> None:
        """Select one of the person's faces (or a prototype) for the buttons."""
        fid = int(face_id)
        if fid not in self.faces:
            raise FacelabError(f"face {fid} is not a face of person {self.person_id}")
        self._mark(fid, selected)
        self.proto_grid.sync(self.selected)

    def _need_person(self) -> int:
        if self.person_id is None:
            raise FacelabError("no person on show")
        return self.person_id

    def _chosen(self, face_ids: tuple[int, ...]) -> list[int]:
        ids = [int(f) for f in face_ids] or sorted(self.selected)
        if not ids:
            raise FacelabError("select faces first")
        return ids

    # ------------------------------------------------------------------ actions
    def rename(self, name: str) -> None:
        """Rename the person (undoable)."""
        pid = self._need_person()
        naming.rename_person(self.catalog, pid, name)
        self._remember("rename", pid, pid)
        self.name_box.value = ""
        self.refresh()
        self.status.say(f"Renamed person #{pid} to {' '.join(name.split())} — undo?",
                        undo=True)

    def hide(self, hidden: bool = True) -> None:
        """Hide the person from listings (or show them again); undoable."""
        pid = self._need_person()
        naming.hide_person(self.catalog, pid, hidden)
        self._remember("hide", pid, pid)
        self.refresh()
        self.status.say(f"{'Hid' if hidden else 'Showed'} person #{pid} — undo?", undo=True)

    def merge_into(self, target: int | str) -> int:
        """Merge the person on show into ``target`` (id or name); the page follows to the
        target. Returns the merge's group id (undo brings the person back)."""
        pid = self._need_person()
        if target is None:
            raise FacelabError("choose the person to merge into")
        dst = naming.resolve_person(self.catalog, target, create=False)
        group = naming.merge_persons(self.catalog, pid, dst)
        self.history.append(_Done("merge", group, pid))
        self.refresh(dst)
        self.status.say(f"Merged person #{pid} into #{dst} — undo?", undo=True)
        return group

    def not_this_person(self, *face_ids: int) -> list[int]:
        """Take faces away from the person (the selection, or ``face_ids``); they are never
        suggested or auto-assigned to them again. Returns the faces removed."""
        pid = self._need_person()
        ids = self._chosen(face_ids)
        result = naming.remove_faces(self.catalog, ids)
        if result.changed:
            self.history.append(_Done("remove", result.group_id, pid))
        self.refresh()
        n = len(result.changed)
        self.status.say(f"Removed {n} face{'s' if n != 1 else ''} from person #{pid} — undo?",
                        undo=bool(result.changed))
        return result.changed

    def pin(self, *face_ids: int, role: str = "exemplar") -> list[int]:
        """Pin faces (the selection, or ``face_ids``) as prototypes of the person, each in its
        own embedding space. Returns the prototype ids."""
        pid = self._need_person()
        ids = self._chosen(face_ids)
        found = faces_on_photos(self.catalog, ids)
        out = [prototypes.pin(self.catalog, pid, f, found[f].space, role) for f in ids]
        self.show(pid, page=self.page)
        self.status.say(f"Pinned {len(out)} face{'s' if len(out) != 1 else ''} as {role} "
                        "prototype (Unpin undoes it)")
        return out

    def unpin(self, *face_ids: int) -> int:
        """Unpin faces (the selection, or ``face_ids``): every role, in every space. Returns
        the number of prototypes unpinned."""
        pid = self._need_person()
        ids = self._chosen(face_ids)
        pinned = sorted({(p["face_id"], p["space"]) for p in self.protos
                         if p["pinned"] and p["face_id"] in ids})
        n = sum(prototypes.unpin(self.catalog, pid, f, sp) for f, sp in pinned)
        self.show(pid, page=self.page)
        self.status.say(f"Unpinned {n} prototype{'s' if n != 1 else ''}")
        return n

    def explain(self, *face_ids: int) -> str:
        """Why each face (any face, not only this person's) is where it is; the text is shown
        under the page and returned."""
        if not face_ids:
            raise FacelabError("which face? pass a face id")
        self.explanation = "\n\n".join(format_explanation(explain(self.catalog, int(f)))
                                       for f in face_ids)
        self.explain_out.value = (f"<pre style='white-space:pre-wrap'>"
                                  f"{html.escape(self.explanation)}</pre>")
        return self.explanation

    def move_to(self, person: int | str, *face_ids: int) -> list[int]:
        """Move faces (the selection, or ``face_ids``) to another person (id, or name:
        created when new); undoable. Returns the faces moved."""
        pid = self._need_person()
        ids = self._chosen(face_ids)
        if isinstance(person, str):
            person = naming.clean_name(person)
        result = naming.move_faces(self.catalog, ids, person)
        review.cleanup(self.catalog)  # suggestions of the faces' new person are moot
        if result.changed:
            self.history.append(_Done("move", result.group_id, pid))
        self.move_name.value = ""
        self.refresh()
        to = person if isinstance(person, str) else f"person #{person}"
        self.status.say(f"Moved {plural(len(result.changed), 'face')} to {to} — undo?",
                        undo=bool(result.changed))
        return result.changed

    def not_a_face(self, *face_ids: int) -> list[int]:
        """Mark faces (the selection, or ``face_ids``) as not faces: they leave the person
        and every gallery but stay in the catalog; undoable. Returns the faces marked."""
        pid = self._need_person()
        result = naming.mark_not_a_face(self.catalog, self._chosen(face_ids))
        if result.changed:
            self.history.append(_Done("not-a-face", result.group_id, pid))
        self.refresh()
        self.status.say(f"Marked {plural(len(result.changed), 'face')} as not a face — "
                        "undo?", undo=bool(result.changed))
        return result.changed

    def undo(self) -> int:
        """Undo the last rename, hide, merge, removal, move or not-a-face made on this page;
        returns the faces restored."""
        if not self.history:
            raise FacelabError("nothing to undo")
        last = self.history.pop()
        n = history.undo_group(self.catalog, last.group_id)
        self.refresh(last.person_id)
        self.status.say(f"Undone {last.what}" + (f": {n} face{'s' if n != 1 else ''} back"
                                                 if n else ""), undo=bool(self.history))
        return n

    def _remember(self, action: str, person_id: int, show: int) -> None:
        """The group id of the person-level event just written (rename and hide return
        none): the newest not-undone event of that action for the person."""
        group = last_person_event_group(self.catalog, action, person_id)
        if group is not None:
            self.history.append(_Done(action, group, show))
