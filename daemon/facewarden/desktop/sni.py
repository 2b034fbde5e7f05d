"""The tray as a StatusNotifierItem on the session bus: KDE Plasma, waybar, GNOME's AppIndicator
extension, COSMIC and other hosts that implement `org.kde.StatusNotifierWatcher` (X11 or Wayland).

Pure jeepney, like the rest of facewarden's D-Bus: pystray's own SNI path goes through
AppIndicator and GTK (PyGObject), which a pip-installed venv does not have. The icon is the one
`tray.draw` paints, sent as `IconPixmap` (ARGB32, network byte order) at the sizes hosts ask for;
the menu is `dbusmenu.Menu`. The item registers with the watcher at start and again whenever a
watcher (re)appears, so a panel restart brings the icon back. `tray.Tray` does the polling and
runs the entries, exactly as for pystray.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial
from typing import Any

from jeepney import MatchRule, Message
from PIL import Image

from ..errors import UserError
from ..paths import paths
from ..service import dbus, eventlog
from ..service.dbus import Bus, method
from . import tray as tray_mod
from .dbusmenu import Item, Menu
from .dbusobject import Exported, Server

log = logging.getLogger(__name__)

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM_PATH = "/StatusNotifierItem"
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
SIZES = (16, 22, 32, 48, 64)  # hosts pick the nearest to their panel's icon size
RECENT_EVENTS = 5
RECENT_S = 24 * 3600.0


def pixmaps(v: tray_mod.View) -> list[tuple[int, int, bytes]]:
    """`v`'s icon as SNI pixmaps: (width, height, ARGB32 big-endian bytes) per size."""
    out = []
    for size in SIZES:
        r, g, b, a = tray_mod.draw(v, size).split()
        # Bands merged in ARGB order: the bytes come out as SNI wants them (Pillow packs no "ARGB").
        out.append((size, size, Image.merge("RGBA", (a, r, g, b)).tobytes()))
    return out


def status_of(v: tray_mod.View) -> str:
    """SNI's Status: a stranger or a lock asks for attention; otherwise the item is just there."""
    return "NeedsAttention" if v.colour == tray_mod.RED else "Active"


def recent_events(now: float) -> list[str]:
    """The last few events of the past day, newest first, as menu lines ("09:41 locked (session)")."""
    try:
        records = eventlog.read(paths().events_file, since=now - RECENT_S)
    except UserError as e:
        return [str(e)]
    lines = []
    for r in reversed(records[-RECENT_EVENTS:]):
        by = r.get("locked_by") or r.get("camera_busy_by")
        line = f"{tray_mod.short_time(r['time'], now)} {r['event'].replace('_', ' ')}"
        lines.append(line + (f" ({by})" if by else ""))
    return lines


def menu_items(t: tray_mod.Tray, clock=time.time) -> list[Item]:
    """The menu: the status line, tray.MENU's entries, the recent events."""
    items = [Item(1, t.current.tooltip.removeprefix("facewarden: "), enabled=False), Item(2, separator=True)]
    for i, ((label, enabled), (_, what)) in enumerate(zip(t.menu_entries(), tray_mod.MENU)):
        items.append(Item(10 + i, label, enabled, action=partial(t.activate, what)))
    events = recent_events(clock()) or ["none in the past day"]
    items += [Item(3, separator=True),
              Item(4, "Recent events", children=[Item(100 + i, line, False) for i, line in enumerate(events)])]
    return items


class StatusNotifierItem(Exported):
    path = ITEM_PATH
    interface = ITEM_INTERFACE
    xml = ('<interface name="org.kde.StatusNotifierItem">'
           + "".join(f'<property name="{n}" type="{s}" access="read"/>' for n, s in (
               ("Category", "s"), ("Id", "s"), ("Title", "s"), ("Status", "s"), ("WindowId", "i"),
               ("IconName", "s"), ("IconPixmap", "a(iiay)"), ("AttentionIconName", "s"),
               ("AttentionIconPixmap", "a(iiay)"), ("OverlayIconName", "s"), ("OverlayIconPixmap", "a(iiay)"),
               ("ToolTip", "(sa(iiay)ss)"), ("ItemIsMenu", "b"), ("Menu", "o")))
           + "".join(f'<method name="{m}"><arg type="i" direction="in"/><arg type="i" direction="in"/></method>'
                     for m in ("Activate", "SecondaryActivate", "ContextMenu"))
           + '<method name="Scroll"><arg type="i" direction="in"/><arg type="s" direction="in"/></method>'
           + "".join(f'<signal name="{s}"/>' for s in ("NewTitle", "NewIcon", "NewAttentionIcon", "NewOverlayIcon",
                                                       "NewToolTip"))
           + '<signal name="NewStatus"><arg type="s"/></signal></interface>')

    def __init__(self, server: Server, t: tray_mod.Tray):
        self.server, self.tray = server, t
        self.name = f"org.kde.StatusNotifierItem-{os.getpid()}-1"
        self.menu = Menu(server, partial(menu_items, t))
        self.view = t.current
        self._pixmaps = pixmaps(self.view)
        server.export(self)

    def properties(self) -> dict[str, tuple[str, Any]]:
        v = self.view
        return {
            "Category": ("s", "ApplicationStatus"), "Id": ("s", "facewarden"), "Title": ("s", "facewarden"),
            "Status": ("s", status_of(v)), "WindowId": ("i", 0), "IconName": ("s", ""),
            "IconPixmap": ("a(iiay)", self._pixmaps), "AttentionIconName": ("s", ""),
            "AttentionIconPixmap": ("a(iiay)", self._pixmaps), "OverlayIconName": ("s", ""),
            "OverlayIconPixmap": ("a(iiay)", []),
            "ToolTip": ("(sa(iiay)ss)", ("", [], "facewarden", v.tooltip.removeprefix("facewarden: "))),
            "ItemIsMenu": ("b", False), "Menu": ("o", Menu.path),
        }

    def show(self, v: tray_mod.View) -> None:
        """What the icon shows changed: tell the hosts (they read the properties again)."""
        old, self.view, self._pixmaps = self.view, v, pixmaps(v)
        for signal in ("NewIcon", "NewAttentionIcon", "NewToolTip", "NewTitle"):
            self.server.signal(self, signal)
        if status_of(v) != status_of(old):
            self.server.signal(self, "NewStatus", "s", (status_of(v),))
        self.menu.changed()

    def call(self, member: str, body: tuple) -> tuple[str | None, tuple]:
        if member == "Activate":  # a left click: pause for 5 minutes, or resume
            self.server.later(partial(self.tray.activate, tray_mod.click_request(self.tray.current)))
            return None, ()
        if member in ("SecondaryActivate", "ContextMenu", "Scroll"):
            return None, ()  # hosts show `Menu` themselves; nothing else to do here
        return super().call(member, body)

    def register(self) -> bool:
        """Tell the watcher about the item; whether it took it."""
        reply = self.server.bus.call(method(WATCHER_PATH, WATCHER, WATCHER, "RegisterStatusNotifierItem", "s",
                                            (self.name,)))
        log.info("registered with %s: %s", WATCHER, reply is not None)
        return reply is not None

    def _watcher_changed(self, msg: Message) -> None:
        _name, _old, new = msg.body
        if new:  # a watcher (re)started: it knows nothing of us. Not on the bus's thread, which must
            # stay free to answer the host's questions the registration sets off.
            threading.Thread(target=self.register, daemon=True).start()

    def follow_watcher(self) -> None:
        rule = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                         member="NameOwnerChanged", path="/org/freedesktop/DBus")
        rule.add_arg_condition(0, WATCHER)
        self.server.bus.subscribe(rule, self._watcher_changed)


def run(t: tray_mod.Tray) -> None:
    """Show `t` as a StatusNotifierItem until it quits or the session bus goes away."""
    bus = Bus.open(dbus.session_bus_address(), "session")
    if bus is None:
        raise UserError("no session bus: the StatusNotifierItem tray needs one")
    try:
        server = Server(bus)
        item = StatusNotifierItem(server, t)
        if not server.own(item.name):
            raise UserError(f"cannot own {item.name} on the session bus")
        t.show = item.show
        item.follow_watcher()
        if not item.register():
            raise UserError(f"no tray host: {WATCHER} refused the item")

        def tick() -> None:
            if bus.closed:
                log.warning("the session bus went away: the tray ends")
                t.stopping.set()

        t.loop(tick=tick)
    finally:
        bus.close()


def which() -> tuple[str, str] | None:
    """The tray this desktop gets and why: ("StatusNotifierItem" or "XEmbed (pystray)", reason);
    None when there is no tray host at all."""
    if tray_mod.sni_watcher():
        return "StatusNotifierItem", f"{WATCHER} is on the session bus (KDE, waybar, GNOME's AppIndicator...)"
    if tray_mod.x_tray_owner():
        return "XEmbed (pystray)", f"no {WATCHER} on the session bus; an X system tray owns _NET_SYSTEM_TRAY"
    return None


def run_tray() -> None:
    """`facewarden tray`: a StatusNotifierItem where a watcher is on the bus, else pystray as before."""
    if tray_mod.sni_watcher():
        run(tray_mod.Tray())
    else:
        tray_mod.run()
