"""`facewarden tray`: the tray icon, a separate process and a client of the daemon's control socket.

The daemon runs headless under systemd; the tray lives in the graphical session and may come and go
(or the daemon may restart under it) without either caring. The state -> picture/tooltip/menu logic
is pure (`view`, `draw`, `MENU`) and shared with the StatusNotifierItem tray (`sni.py`, what
`facewarden tray` shows wherever a StatusNotifierWatcher is on the session bus). Only `run` touches
pystray, which connects to the display as soon as it is imported, so it is imported there and
nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Callable

from PIL import Image, ImageDraw

from ..config import write_default
from ..errors import UserError
from ..paths import paths
from ..service import control, dbus

log = logging.getLogger(__name__)

POLL_S = 2.0

GREEN = (40, 167, 69)
GREY = (140, 140, 140)
RED = (220, 38, 38)
AMBER = (245, 158, 11)
OFF = (72, 72, 96)  # the daemon is not running: a hollow ring in this slate colour
WHITE = (255, 255, 255)

STATE_WORDS = {
    "owner_present": "owner present",
    "owner_absent": "owner away",
    "stranger": "stranger at the desk",
    "paused": "paused",
    "pending": "checking",
}


# The softer answers before a lock, while the screen is dimmed (status "warning").
WARNING_WORDS = {
    "owner_leaving": "you seem to have left: dimmed, the lock follows",
    "owner_looking_away": "looking away: dimmed until you face the screen",
}


@dataclass(frozen=True)
class View:
    colour: tuple[int, int, int]
    camera_lost: bool
    running: bool
    paused: bool
    tooltip: str


def short_time(t: float, now: float) -> str:
    """`t` as "09:41" today, with the date on other days."""
    at, today = datetime.fromtimestamp(t), datetime.fromtimestamp(now)
    return at.strftime("%H:%M") if at.date() == today.date() else at.strftime("%Y-%m-%d %H:%M")


def view(status: dict | None, now: float) -> View:
    """What the icon shows for a `status` reply (None: the daemon is not reachable)."""
    if status is None:
        return View(OFF, False, False, False, "facewarden: daemon not running")
    state = status.get("state", "")
    locked = bool(status.get("locked"))
    lost = status.get("camera") == "lost"
    paused = state == "paused"
    if paused:
        colour = AMBER  # the user's explicit choice wins over what the camera saw before
    elif state == "stranger" or locked:
        colour = RED
    elif state == "pending":
        colour = AMBER
    elif state == "owner_present":
        colour = AMBER if status.get("warning") else GREEN
    else:
        colour = GREY
    words = STATE_WORDS.get(state, state or "unknown")
    if paused:
        until = status.get("paused_until")
        words += f" until {short_time(until, now)}" if until else " until resumed"
    elif status.get("since"):
        words += f" since {short_time(status['since'], now)}"
    busy = f"camera busy: {status.get('camera_busy_by') or 'another program'}"
    warning = WARNING_WORDS.get(status.get("warning") or "", "")
    extras = [e for e, on in (("session locked", locked), ("camera lost", lost),
                              (busy, status.get("camera") == "busy"), (warning, bool(warning))) if on]
    tooltip = "facewarden: " + "; ".join([words, *extras])
    return View(colour, lost, True, paused, tooltip)


def draw(v: View, size: int = 64) -> Image.Image:
    """The icon for `v`: a disc in the state colour with a camera on it, the camera struck through
    when lost; a hollow ring when the daemon is not running."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size / 64  # drawn on a 64 grid, scaled
    box = [2 * s, 2 * s, 62 * s - 1, 62 * s - 1]
    if v.running:
        d.ellipse(box, fill=v.colour)
        ink = WHITE
    else:
        d.ellipse(box, outline=v.colour, width=max(1, round(7 * s)))
        ink = v.colour
    # The camera: a body, a lens and the viewfinder bump.
    d.rounded_rectangle([16 * s, 24 * s, 48 * s, 44 * s], radius=3 * s, fill=ink)
    d.rectangle([26 * s, 19 * s, 38 * s, 24 * s], fill=ink)
    d.ellipse([26 * s, 27 * s, 38 * s, 39 * s], fill=v.colour if v.running else (0, 0, 0, 0))
    if v.camera_lost:
        d.line([14 * s, 50 * s, 50 * s, 14 * s], fill=ink, width=max(1, round(5 * s)))
    return img


# The menu: (label, control request or a local action name). The first item is also what a plain
# click does on backends without menus (xorg): pause 5 min, or resume when paused (see run()).
PAUSE_5 = {"cmd": "pause", "seconds": 300}
MENU: list[tuple[str, dict | str]] = [
    ("Pause 5 min", PAUSE_5),
    ("Pause 15 min", {"cmd": "pause", "seconds": 900}),
    ("Pause 1 h", {"cmd": "pause", "seconds": 3600}),
    ("Pause until resumed", {"cmd": "pause", "seconds": None}),
    ("Resume", {"cmd": "resume"}),
    ("Lock now", {"cmd": "lock-now"}),
    ("Open config", "open-config"),
    ("Quit tray", "quit"),
]


def click_request(v: View) -> dict:
    """What a plain click asks the daemon: toggle a short pause."""
    return {"cmd": "resume"} if v.paused else PAUSE_5


def open_config() -> str:
    """Open the config file in the user's editor, creating the documented default if there is none."""
    path = write_default(paths().config_file)
    opener = shutil.which("xdg-open")
    if opener is None:
        raise UserError(f"xdg-open is not installed; edit {path} yourself")
    subprocess.Popen([opener, str(path)], stdin=subprocess.DEVNULL, start_new_session=True)
    return str(path)


class Tray:
    """The tray's behaviour, apart from pystray: polls the daemon, runs menu entries.

    `show(view)` is called whenever what the icon shows changes; `stop()` ends the tray.
    """

    def __init__(self, request: Callable[[dict], dict] = control.ask, *,
                 show: Callable[[View], None] = lambda v: None, stop: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time, tell: Callable[[str], None] | None = None):
        self.request, self.show, self.stop_icon, self.clock = request, show, stop, clock
        self.tell = tell or _tell
        self.current = view(None, clock())
        self.stopping = threading.Event()
        # The poll loop and menu entries refresh from different threads; pystray's cross-thread
        # updates are not safe to interleave.
        self._refreshing = threading.Lock()

    def refresh(self) -> View:
        with self._refreshing:
            if self.stopping.is_set():
                return self.current
            v = view(control.poll(self.request), self.clock())
            if v != self.current:
                self.current = v
                self.show(v)
            return v

    def activate(self, what: dict | str) -> None:
        """Run one menu entry; failures are told to the user, never raised into the toolkit."""
        try:
            if what == "quit":
                # Under the refresh lock: an icon update still in flight when the icon stops would
                # wait forever for pystray's finished loop and keep the process alive.
                with self._refreshing:
                    self.stopping.set()
                self.stop_icon()
                return
            if what == "open-config":
                open_config()
                return
            if not isinstance(what, dict):
                raise ValueError(f"unknown menu entry {what!r}")
            reply = self.request(what)
            if not reply.get("ok"):
                self.tell(f"The daemon refused: {reply.get('error', 'no reason given')}")
        except (UserError, OSError, ValueError) as e:
            self.tell(str(e))
        self.refresh()

    def menu_entries(self) -> list[tuple[str, bool]]:
        """MENU's labels, each with whether it can be chosen now (daemon commands need a daemon)."""
        return [(label, self.current.running or not isinstance(what, dict)) for label, what in MENU]

    def popup(self, x: int, y: int) -> None:
        """Show the menu at (x, y) in a Tk process and run the entry chosen there, if any."""
        try:
            chosen = menu_choice(x, y, self.menu_entries())
        except UserError as e:
            self.tell(str(e))
            return
        if chosen is not None:
            self.activate(MENU[chosen][1])

    def loop(self, interval: float = POLL_S, tick: Callable[[], None] = lambda: None) -> None:
        while not self.stopping.is_set():
            self.refresh()
            tick()
            self.stopping.wait(interval)


def menu_choice(x: int, y: int, entries: list[tuple[str, bool]]) -> int | None:
    """The index of the entry the user picks in a popup menu at (x, y); None when dismissed.

    pystray's xorg backend has no menu. Tk draws one in a short-lived process of its own: Tk
    wants its own thread and event loop, which pystray's X loop must not share.
    """
    argv = [sys.executable, "-m", __name__, "--menu", str(x), str(y), json.dumps(entries)]
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        if "No module named" in result.stderr:
            raise UserError("the right-click menu needs tkinter (Debian: apt install python3-tk); a left click "
                            "pauses or resumes, and `facewarden pause|resume|lock` work meanwhile")
        raise UserError(f"the right-click menu failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    answer = result.stdout.strip()
    return int(answer) if answer.isdigit() and int(answer) < len(entries) else None


def _tk_menu(x: int, y: int, entries: list[tuple[str, bool]]) -> int | None:
    import tkinter

    root = tkinter.Tk(className="facewarden-menu")
    root.withdraw()
    chosen: list[int] = []
    menu = tkinter.Menu(root, tearoff=0)
    for i, (label, enabled) in enumerate(entries):
        menu.add_command(label=label, state="normal" if enabled else "disabled",
                         command=partial(chosen.append, i))
    # Tk unposts the menu before it runs the chosen command: give the command a moment, then end,
    # whether something was chosen or the user clicked elsewhere.
    menu.bind("<Unmap>", lambda _e: root.after(100, root.quit))
    menu.tk_popup(x, y)
    root.mainloop()
    return chosen[0] if chosen else None


def _tell(message: str) -> None:
    log.warning("%s", message)
    dbus.notify("facewarden tray", message)


def x_tray_owner(display: str | None = None) -> bool:
    """Whether an X system tray (XEmbed, `_NET_SYSTEM_TRAY_S<screen>`) is running on the display."""
    try:
        import Xlib.display
        import Xlib.error

        d = Xlib.display.Display(display)
    except Exception as e:  # python-xlib raises assorted types for a missing/refused display
        log.debug("no X display: %s", e)
        return False
    try:
        owner = d.get_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"))
        return bool(owner) and getattr(owner, "id", 0) != 0
    finally:
        d.close()


def sni_watcher() -> bool:
    """Whether a StatusNotifierItem host (KDE, GNOME's AppIndicator extension...) is on the bus."""
    return dbus.has_name("org.kde.StatusNotifierWatcher")


def _import_pystray():
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no graphical display (DISPLAY is not set): run the tray inside your desktop session")
    try:
        import pystray
    except Exception as e:  # pystray raises whatever its backends raise when no display answers
        raise UserError(f"cannot show a tray icon here: {e}") from None
    return pystray


def run() -> None:
    pystray = _import_pystray()
    backend = pystray.Icon.__module__.rsplit(".", 1)[-1]  # _appindicator, _gtk or _xorg
    if backend == "_appindicator" and not sni_watcher():
        raise UserError("no tray host: no StatusNotifierWatcher on the session bus "
                        "(on GNOME install and enable the AppIndicator extension)")
    if backend in ("_xorg", "_gtk") and not x_tray_owner():
        raise UserError("no tray host: no system tray owns _NET_SYSTEM_TRAY on this display "
                        "(add a notification area/systray to your panel)")

    from .xorg_icon import fixed_xorg_icon

    icon_class = fixed_xorg_icon(pystray.Icon) if backend == "_xorg" else pystray.Icon
    icon = icon_class("facewarden", title="facewarden")
    tray = Tray(show=lambda v: _show(icon, v), stop=icon.stop)
    if backend == "_xorg":
        icon.on_menu = lambda x, y: threading.Thread(target=tray.popup, args=(x, y), daemon=True).start()

    def item(label: str, what: dict | str):
        needs_daemon = isinstance(what, dict)
        # Off the toolkit's thread: a lock may take seconds, and the icon must keep redrawing.
        return pystray.MenuItem(
            label, lambda _icon, _item: threading.Thread(target=tray.activate, args=(what,), daemon=True).start(),
            # Resume only while paused and Pause only while not; a plain click on a menu-less
            # backend runs the default item, which toggles between the two.
            default=(lambda _: not tray.current.paused) if what is PAUSE_5 else
                    (lambda _: tray.current.paused) if label == "Resume" else False,
            enabled=(lambda _: tray.current.running) if needs_daemon else True)

    icon.menu = pystray.Menu(*(item(label, what) for label, what in MENU))
    icon.icon = draw(tray.current)

    def setup(ic):
        ic.visible = True
        _show(icon, tray.current)
        tray.loop(tick=getattr(icon, "redock", lambda: None))

    icon.run(setup)
    tray.stopping.set()


def _show(icon, v: View) -> None:
    icon.title = v.tooltip  # first, so the tooltip never lags the picture
    icon.icon = draw(v)
    icon.update_menu()


if __name__ == "__main__" and sys.argv[1:2] == ["--menu"]:
    _picked = _tk_menu(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
    print("" if _picked is None else _picked)
