"""The people overview: everyone named so far, one tile each, most faces first.

Each person's tile shows a cover face (a pinned prototype, else their best-quality face:
:func:`facelab.store.persons.cover_faces`) captioned with the name and the face count; the
tooltip splits the count into faces a person confirmed and faces assigned automatically
(:func:`facelab.people.naming.persons`). Clicking a tile opens the person's page -- in the
labeling app, its Person tab (``on_open``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facelab.errors import ConfigError, FacelabError
from facelab.people import naming
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.persons import cover_faces
from facelab.widgets.gallery import plural
from facelab.widgets.thumbs import ThumbCache
from facelab.widgets.view import PagedPanel, StatusLine, TileGrid, button, w


def person_caption(p: dict[str, Any]) -> str:
    """A person's tile caption: "Anna · 120" (the name, or #id, and the face count)."""
    return f"{p['name'] or '#' + str(p['person_id'])} · {p['n_faces']}"


class PeopleOverview(PagedPanel):
    """Every person not merged away, most faces first, as cover tiles that open them.

    Parameters
    ----------
    catalog : Catalog
        The workspace.
    on_open : callable, optional
        Called with a person id when their tile is clicked.
    page_size : int, default=48
        Tiles per page.
    thumbs, settings
        As for :class:`~facelab.widgets.ClusterGallery`.

    Attributes
    ----------
    people : list of dict
        :func:`facelab.people.naming.persons` rows, most faces first.
    covers : dict of int to int
        person id -> the face on their tile.
    opened : int or None
        The person opened last.
    """

    _paged = "people"

    def __init__(self, catalog: Catalog, *, on_open: Callable[[int], Any] | None = None,
                 page_size: int = 48, thumbs: ThumbCache | None = None,
                 settings: Settings | None = None) -> None:
        if not 1 <= int(page_size) <= 500:
            raise ConfigError(f"page_size={page_size} must be between 1 and 500 people")
        self.catalog = catalog
        self.on_open = on_open
        self.page_size = int(page_size)
        self.settings = settings or Settings.from_env()
        self.thumbs = thumbs or ThumbCache(catalog, settings=self.settings)
        self.people: list[dict[str, Any]] = []
        self.covers: dict[int, int] = {}
        self.page = 0
        self.selected: set[int] = set()  # PagedPanel's; a click opens, it does not select
        self.opened: int | None = None
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.title = w.HTML()
        self.grid = TileGrid(self.thumbs, self._clicked, css="facelab-people-grid",
                             select_icon="user")
        self.prev_page_button = button("◀ page", "facelab-prev-page")
        self.next_page_button = button("page ▶", "facelab-next-page")
        self.prev_page_button.on_click(lambda _b: self.turn(-1))
        self.next_page_button.on_click(lambda _b: self.turn(+1))
        self.status = StatusLine(lambda: None)
        self.widget = w.VBox([self.title, self.grid.box,
                              w.HBox([self.prev_page_button, self.next_page_button])])
        self.widget.add_class("facelab-people-overview")

    def _render(self) -> None:
        n = len(self.people)
        faces = sum(p["n_faces"] for p in self.people)
        self.title.value = (f"<b>{plural(n, 'person')}</b> · {plural(faces, 'face')} named "
                            f"· page {self.page + 1} of {self.pages} · click a face to open "
                            "the person" if n else
                            "<b>No people yet</b> (label a cluster to name the first)")
        lo = self.page * self.page_size
        page = self.people[lo:lo + self.page_size]
        tips = {p["person_id"]: (
            f"{p['name'] or 'unnamed person'} (#{p['person_id']}): "
            f"{plural(p['n_faces'], 'face')}, {p['n_confirmed']} confirmed, {p['n_auto']} "
            f"assigned automatically{', hidden' if p['hidden'] else ''} — click to open")
            for p in page}
        self.grid.show([(p["person_id"], self.covers.get(p["person_id"], -1),
                         person_caption(p)) for p in page], set(), tooltips=tips)
        self.prev_page_button.disabled = self.page <= 0
        self.next_page_button.disabled = self.page >= self.pages - 1

    def refresh(self) -> None:
        """Re-read the people and their covers, keeping the page."""
        self.people = naming.persons(self.catalog)
        self.covers = cover_faces(self.catalog)
        self.page = max(0, min(self.page, self.pages - 1))
        self._render()

    def caption(self, person_id: int) -> str:
        """The caption of a person's tile ("Anna · 120")."""
        for p in self.people:
            if p["person_id"] == int(person_id):
                return person_caption(p)
        raise FacelabError(f"person {person_id} is not listed")

    def _clicked(self, person_id: int, selected: bool) -> None:
        if selected:
            self.grid.sync(set())  # a tile opens the person; it stays unselected
            self.open(person_id)

    def open(self, person_id: int) -> None:
        """Open a person (what a click on their tile does)."""
        self.opened = int(person_id)
        if self.on_open is not None:
            self.on_open(self.opened)
