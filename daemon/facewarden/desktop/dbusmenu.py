"""The tray's menu as `com.canonical.dbusmenu`, the menu protocol StatusNotifierItem hosts speak
(KDE, waybar, GNOME's AppIndicator extension, which refuses an item without one).

The menu is built afresh from the tray's state whenever a host asks (`build`); each entry has an
id fixed by its builder, so an `Event` a host sends for a layout it read a moment ago still finds
its entry. `changed()` tells hosts to read the layout again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .dbusobject import Exported, Refused, Server

log = logging.getLogger(__name__)

PATH = "/MenuBar"
INTERFACE = "com.canonical.dbusmenu"
ROOT = 0


@dataclass
class Item:
    id: int
    label: str = ""
    enabled: bool = True
    action: Callable[[], None] | None = None  # run on a thread of its own (Server.later) when clicked
    children: list[Item] = field(default_factory=list)
    separator: bool = False

    def props(self) -> dict[str, tuple[str, Any]]:
        if self.separator:
            return {"type": ("s", "separator")}
        props: dict[str, tuple[str, Any]] = {"label": ("s", self.label), "enabled": ("b", self.enabled)}
        if self.children:
            props["children-display"] = ("s", "submenu")
        return props

    def find(self, id: int) -> Item | None:
        if self.id == id:
            return self
        return next((found for child in self.children if (found := child.find(id)) is not None), None)


def _layout(item: Item, depth: int, names: list[str]) -> tuple:
    props = {k: v for k, v in item.props().items() if not names or k in names}
    children = [] if depth == 0 else [("(ia{sv}av)", _layout(c, depth - 1, names)) for c in item.children]
    return item.id, props, children


class Menu(Exported):
    path = PATH
    interface = INTERFACE
    xml = ('<interface name="com.canonical.dbusmenu">'
           '<property name="Version" type="u" access="read"/><property name="TextDirection" type="s" access="read"/>'
           '<property name="Status" type="s" access="read"/><property name="IconThemePath" type="as" access="read"/>'
           '<method name="GetLayout"><arg type="i" direction="in"/><arg type="i" direction="in"/>'
           '<arg type="as" direction="in"/><arg type="u" direction="out"/><arg type="(ia{sv}av)" direction="out"/>'
           '</method><method name="GetGroupProperties"><arg type="ai" direction="in"/><arg type="as" direction="in"/>'
           '<arg type="a(ia{sv})" direction="out"/></method><method name="GetProperty"><arg type="i" direction="in"/>'
           '<arg type="s" direction="in"/><arg type="v" direction="out"/></method><method name="Event">'
           '<arg type="i" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/>'
           '<arg type="u" direction="in"/></method><method name="EventGroup"><arg type="a(isvu)" direction="in"/>'
           '<arg type="ai" direction="out"/></method><method name="AboutToShow"><arg type="i" direction="in"/>'
           '<arg type="b" direction="out"/></method><method name="AboutToShowGroup"><arg type="ai" direction="in"/>'
           '<arg type="ai" direction="out"/><arg type="ai" direction="out"/></method>'
           '<signal name="ItemsPropertiesUpdated"><arg type="a(ia{sv})"/><arg type="a(ias)"/></signal>'
           '<signal name="LayoutUpdated"><arg type="u"/><arg type="i"/></signal>'
           '<signal name="ItemActivationRequested"><arg type="i"/><arg type="u"/></signal></interface>')

    def __init__(self, server: Server, build: Callable[[], list[Item]]):
        self.server, self.build = server, build
        self.revision = 1
        self._served: tuple | None = None  # the last layout a host read: AboutToShow compares with it
        server.export(self)

    def root(self) -> Item:
        return Item(ROOT, children=self.build())

    def changed(self) -> None:
        self.revision += 1
        self.server.signal(self, "LayoutUpdated", "ui", (self.revision, ROOT))

    def properties(self) -> dict[str, tuple[str, Any]]:
        return {"Version": ("u", 3), "TextDirection": ("s", "ltr"), "Status": ("s", "normal"),
                "IconThemePath": ("as", [])}

    def _item(self, id: int) -> Item:
        found = self.root().find(id)
        if found is None:
            raise Refused("org.freedesktop.DBus.Error.InvalidArgs", f"no menu item {id}")
        return found

    def event(self, id: int, kind: str) -> None:
        item = self._item(id)
        if kind == "clicked" and item.enabled and item.action is not None:
            self.server.later(item.action)  # a lock takes seconds: not on the bus's thread

    def call(self, member: str, body: tuple) -> tuple[str | None, tuple]:
        if member == "GetLayout":
            parent, depth, names = body
            layout = _layout(self._item(parent), depth, names)
            if parent == ROOT:
                self._served = layout
            return "u(ia{sv}av)", (self.revision, layout)
        if member == "GetGroupProperties":
            ids, names = body
            root = self.root()
            found = [item for i in ids if (item := root.find(i)) is not None]
            return "a(ia{sv})", ([_layout(item, 0, names)[:2] for item in found],)
        if member == "GetProperty":
            props = self._item(body[0]).props()
            if body[1] not in props:
                raise Refused("org.freedesktop.DBus.Error.InvalidArgs", f"no property {body[1]}")
            return "v", (props[body[1]],)
        if member == "Event":
            self.event(body[0], body[1])
            return None, ()
        if member == "EventGroup":
            errors = []
            for id, kind, _data, _time in body[0]:
                try:
                    self.event(id, kind)
                except Refused:
                    errors.append(id)
            return "ai", (errors,)
        if member == "AboutToShow":
            return "b", (self._stale(),)
        if member == "AboutToShowGroup":
            return "aiai", ([ROOT] if self._stale() else [], [])
        return super().call(member, body)

    def _stale(self) -> bool:
        """Whether what a host last read differs from the menu now (the recent events change
        without a state change); if so, announce a new layout."""
        if self._served is not None and self._served != _layout(self.root(), -1, []):
            self._served = None
            self.changed()
            return True
        return False
