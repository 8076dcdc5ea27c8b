"""View pieces shared by the galleries: a grid of selectable face tiles and a status line.

Views only: they hold ipywidgets and call back into a controller; every decision (what is
selected, what a click does to the catalog) lives in the controller classes, whose methods
tests call directly. CSS classes (``facelab-...``) name the parts so a browser test can
find them.

Two hooks tie the pages of :class:`~facelab.widgets.LabelingApp` together without the pages
knowing each other: a :class:`TileGrid` whose ``on_photo`` is set gives every tile a photo
button (the face's whole photo, boxed), and a :class:`StatusLine` calls its ``listeners``
after every message that is not an error -- each action of every page ends with one, so
the app learns that the catalog changed and refreshes the other pages.

Keyboard shortcuts: ipywidgets 8 sends no key events from the browser to the kernel; the
labeling app listens through ``ipyevents`` on its keys pad (:data:`facelab.widgets.app.KEYS`:
A accept, R reject, N next, ...). Everywhere, Tab moves the focus between buttons and Space or
Enter presses the focused one.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from facelab.errors import FacelabError
from facelab.widgets.thumbs import ThumbCache

try:
    import ipywidgets as w
except ImportError as exc:  # pragma: no cover - ipywidgets is in the notebooks extra
    raise ImportError("facelab.widgets needs ipywidgets 8: pip install 'facelab[notebooks]'"
                      ) from exc


class TileGrid:
    """Face tiles (thumbnail + toggle button) in a wrapping row; a toggle selects its tile.

    ``on_toggle(key, selected)`` is called when the user flips a tile; ``key`` is what the
    controller selects by (a face id, or a suggestion id in the review queue).
    """

    #: A tile action: (button text, tooltip, what a click does).
    Action = tuple[str, str, Callable[[], Any]]

    def __init__(self, thumbs: ThumbCache, on_toggle: Callable[[int, bool], None], *,
                 css: str, select_icon: str = "times") -> None:
        self.thumbs = thumbs
        self.on_toggle = on_toggle
        self.select_icon = select_icon
        #: When set, each tile gets a photo button calling ``on_photo(face_id)``.
        self.on_photo: Callable[[int], Any] | None = None
        self.actions: dict[int, list[w.Button]] = {}
        self._last: tuple[Any, ...] = ((), set(), None, None)
        self.box = w.Box(layout=w.Layout(display="flex", flex_flow="row wrap",
                                         align_items="flex-start"))
        self.box.add_class(css)
        self.toggles: dict[int, w.ToggleButton] = {}
        self.images: dict[int, w.Image] = {}
        self._tiles: list[w.Widget] = []

    def show(self, items: Sequence[tuple[int, int, str]], selected: set[int], *,
             tooltips: dict[int, str] | None = None,
             actions: dict[int, list[TileGrid.Action]] | None = None) -> None:
        """Replace the tiles by ``items`` = (key, face_id, caption), ``selected`` toggled on;
        ``tooltips`` (by key) replace the toggles' default one, ``actions`` (by key) add
        buttons under a tile (e.g. one-click proposals)."""
        self._last = (list(items), set(selected), tooltips, actions)
        for tile in self._tiles:  # close old widgets: each one holds a comm to the browser
            tile.close()
        self._tiles, self.toggles, self.images, self.actions = [], {}, {}, {}
        jpegs = self.thumbs.get_many([face_id for _, face_id, _ in items])
        size = self.thumbs.size
        tiles = []
        for (key, face_id, caption), jpeg in zip(items, jpegs, strict=True):
            image = w.Image(value=jpeg, format="jpeg", width=size, height=size)
            tip = (tooltips or {}).get(key, f"face {face_id}: click to select")
            photo = self.on_photo
            toggle = w.ToggleButton(value=key in selected, description=caption, tooltip=tip,
                                    layout=w.Layout(width=f"{size + 4 - 36 * bool(photo)}px"))
            toggle.add_class("facelab-toggle")
            toggle.add_class(f"facelab-key-{key}")
            toggle.observe(self._flip(key), names="value")
            row: list[w.Widget] = [toggle]
            if photo is not None:
                link = button("", "facelab-photo-link", icon="image", width="32px")
                link.layout.padding = "0"
                link.tooltip = f"face {face_id}: its photo, every face boxed"
                link.on_click(lambda _b, f=face_id, go=photo: go(f))
                row.append(link)
            buttons = []
            for text, hint, act in (actions or {}).get(key, []):
                b = button(text, "facelab-tile-action", width=f"{size + 4}px")
                b.tooltip = hint
                b.on_click(lambda _b, act=act: act())
                buttons.append(b)
            line = w.HBox(row) if len(row) > 1 else toggle
            tile = w.VBox([image, line, *buttons],
                          layout=w.Layout(margin="2px", padding="2px"))
            tile.add_class("facelab-tile")
            self.toggles[key], self.images[key], self.actions[key] = toggle, image, buttons
            self._tiles += [image, *row, *buttons, *([line] if line is not toggle else []),
                            tile]
            tiles.append(tile)
        self.box.children = tiles
        self.sync(selected)

    def redraw(self, selected: set[int] | None = None) -> None:
        """Show the last tiles again (after ``on_photo`` was set, say), ``selected`` (the
        controller's selection now; default: as last shown) toggled on."""
        items, last, tooltips, actions = self._last
        self.show(items, last if selected is None else selected, tooltips=tooltips,
                  actions=actions)

    def _flip(self, key: int) -> Callable[[dict[str, Any]], None]:
        def handler(change: dict[str, Any]) -> None:
            self.on_toggle(key, bool(change["new"]))
        return handler

    def sync(self, selected: set[int]) -> None:
        """Make the tiles show ``selected`` (after a controller changed it)."""
        for key, toggle in self.toggles.items():
            on = key in selected
            if toggle.value != on:
                toggle.value = on  # fires on_toggle, which is idempotent
            toggle.button_style = "danger" if on else ""
            toggle.icon = self.select_icon if on else ""


class StatusLine:
    """One line saying what the last action did, with an Undo button when it can be undone."""

    def __init__(self, on_undo: Callable[[], Any]) -> None:
        self.text = w.HTML("")
        self.text.add_class("facelab-status")
        self.undo_button = w.Button(description="Undo", icon="undo",
                                    layout=w.Layout(display="none", width="90px"))
        self.undo_button.add_class("facelab-undo")
        self.undo_button.on_click(lambda _b: on_undo())
        self.box = w.HBox([self.text, self.undo_button])
        self.value = ""  # the message as plain text, for tests and notebooks
        #: Called with each message that is not an error (an action's outcome): how the
        #: labeling app hears that a page changed the catalog.
        self.listeners: list[Callable[[str], Any]] = []

    def say(self, message: str, *, undo: bool = False, error: bool = False) -> None:
        self.value = message
        colour = "#b00020" if error else "inherit"
        self.text.value = f"<span style='color:{colour}'>{html.escape(message)}</span>"
        self.undo_button.layout.display = "" if undo else "none"
        if not error:
            for listener in list(self.listeners):
                listener(message)


def button(description: str, css: str, *, icon: str = "", style: str = "",
           width: str = "auto") -> w.Button:
    """A Button with a CSS class, for views and browser tests alike."""
    b = w.Button(description=description, icon=icon, button_style=style,
                 layout=w.Layout(width=width))
    b.add_class(css)
    return b


class Picker:
    """A Dropdown of ``(label, id)`` whose programmatic updates do not call back: only a
    user's pick calls ``on_pick(id)`` (re-filling the options must not re-render a page)."""

    def __init__(self, on_pick: Callable[[Any], None] | None, css: str, *,
                 description: str = "", width: str = "360px") -> None:
        self.box = w.Dropdown(options=[], value=None, description=description,
                              layout=w.Layout(width=width))
        self.box.add_class(css)
        self._quiet = False
        self._on_pick = on_pick
        self.box.observe(self._changed, names="value")

    def _changed(self, change: dict[str, Any]) -> None:
        if not self._quiet and self._on_pick is not None and change["new"] is not None:
            self._on_pick(change["new"])

    @property
    def value(self) -> Any:
        return self.box.value

    @property
    def ids(self) -> list[Any]:
        return [v for _, v in self.box.options]

    def set(self, options: Sequence[tuple[str, Any]], value: Any) -> None:
        """Replace the options and select ``value`` (None, or one not offered: nothing)."""
        self._quiet = True
        try:
            self.box.options = list(options)
            self.box.value = value if value in self.ids else None
        finally:
            self._quiet = False


class Panel:
    """Base of the galleries: shows ``self.widget`` in a notebook and turns a button's
    FacelabError into the status line (``self.status``), not a traceback lost in the
    browser's log."""

    widget: Any
    status: StatusLine

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _guard(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except FacelabError as exc:
            self.status.say(str(exc), error=True)


class PagedPanel(Panel):
    """A panel that pages through a list (named by ``_paged``) and selects tiles of its
    ``grid``: the page arithmetic and the selection set the three galleries share."""

    _paged: str  # attribute holding the list that is shown in pages
    page: int
    page_size: int
    selected: set[int]
    grid: TileGrid
    _render: Callable[[], None]

    @property
    def pages(self) -> int:
        return max(1, -(-len(getattr(self, self._paged)) // self.page_size))

    def turn(self, pages: int) -> None:
        """Move ``pages`` pages forward (negative: back); the selection is kept."""
        self.page = max(0, min(self.page + int(pages), self.pages - 1))
        self._render()

    def _mark(self, key: int, selected: bool) -> None:
        """Add ``key`` to the selection or take it out, and show it on the tiles."""
        if selected:
            self.selected.add(key)
        else:
            self.selected.discard(key)
        self.grid.sync(self.selected)
