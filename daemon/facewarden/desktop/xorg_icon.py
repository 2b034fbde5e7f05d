"""pystray 0.19's xorg tray icon, fixed for the trays it meets (seen on Debian's trayer): the tray
(`tray.py`) uses it in place of pystray's own. Imported only where pystray is (inside `tray.run`)."""

from __future__ import annotations


def fixed_xorg_icon(base):
    """pystray 0.19's xorg Icon with a right-click menu (see menu_choice) and three fixes, all seen
    on Debian's trayer (the third is _mainloop's):
    - it handles ButtonPress but never selects it on its window, so no click ever arrives
      (pystray issue #151, "callbacks not working on tint2");
    - every icon update asks the tray to dock the window again, and after a few re-docks trayer
      shrinks the icon to 1 pixel wide. Dock only when not docked (a restarted tray still clears
      `_systray_manager` through DestroyNotify, so the icon re-docks then)."""
    import Xlib.X

    class Icon(base):  # type: ignore[valid-type,misc]  # pystray picks its backend class at import
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._window.change_attributes(
                event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
            self._display.flush()

        #: Called with the pointer's root coordinates on a right click (set by run()).
        on_menu = None
        _stopped = False

        def _stop(self):
            super()._stop()
            self._stopped = True

        def _mainloop(self):
            # pystray's loop ends only on the DestroyNotify of its window, which sometimes never
            # arrives after stop() (seen with trayer): the tray then hangs instead of quitting.
            # The same loop, also ending right after the stop request was handled.
            try:
                for event in self._events():
                    if event.type == Xlib.X.DestroyNotify and event.window == self._window:
                        break
                    self._message_handlers.get(event.type, lambda e: None)(event)
                    if self._stopped:
                        break
            except Exception:
                self._log.error("An error occurred in the main loop", exc_info=True)

        def _on_button_press(self, event):
            if event.detail == 3 and self.on_menu is not None:
                self.on_menu(event.root_x, event.root_y)
            else:
                super()._on_button_press(event)

        def _dock_window(self):
            if self._systray_manager is None:
                super()._dock_window()

        def redock(self):
            """Dock again once a tray is back (pystray itself retries only on the next update)."""
            if self._systray_manager is None and self._get_systray_manager() is not None:
                self._update_icon()

    return Icon
