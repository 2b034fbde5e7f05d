"""The desktop commands: tray, install, uninstall, doctor."""

from __future__ import annotations


def tray(args) -> int:
    from ..desktop import sni

    sni.run_tray()
    return 0


def install(args) -> int:
    from ..desktop import units

    units.install(print)
    return 0


def uninstall(args) -> int:
    from ..desktop import units

    units.uninstall(args.purge, print)
    return 0


def doctor(args) -> int:
    from ..desktop.doctor import checks
    from ..service.control import poll

    status = poll()
    print(("ok   daemon: running, " + status.get("state", "?")) if status else
          "warn daemon: not running -- fix: facewarden install, or `facewarden run`", flush=True)
    found = checks(status)
    for c in found:
        print(c.line(), flush=True)
    return 1 if any(not c.ok and c.essential for c in found) else 0
