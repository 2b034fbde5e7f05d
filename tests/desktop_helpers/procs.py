"""Start and stop the real desktop processes the tests need, on free addresses.

Each helper is a context manager that waits until its process is usable, and kills it (and only it)
on exit. Missing Debian programs skip the test with the package to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from support import wait_for  # noqa: F401  (the tests' one wait_for, here for the desktop tests)

HERE = Path(__file__).resolve().parent
WAIT_S = 20.0  # generous: the CI machine is small and shared


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package {package}; .ci/run installs it)")
    return path


def user_group(uid: int) -> int:
    import pwd

    return pwd.getpwuid(uid).pw_gid



def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dbus_daemon(*args: str, user: int | None = None) -> Iterator[str]:
    """A private `dbus-daemon ARGS...` (as uid `user` and its group, if given); yields the address it prints."""
    exe = need("dbus-daemon", "dbus")
    as_user = {} if user is None else {"user": user, "group": user_group(user), "extra_groups": []}
    proc = subprocess.Popen([exe, *args, "--nofork", "--nopidfile", "--print-address=1"], stdout=subprocess.PIPE,
                            text=True, **as_user)
    try:
        printed = proc.stdout.readline().strip()
        assert printed.startswith("unix:path="), f"dbus-daemon said {printed!r}"
        yield printed
    finally:
        _stop(proc)


@contextmanager
def session_bus(tmp: Path) -> Iterator[str]:
    """A private `dbus-daemon --session`; yields its address."""
    with dbus_daemon("--session", f"--address=unix:path={tmp / 'bus'}") as address:
        yield address


@contextmanager
def bus_server(address: str, record: Path, *names: str) -> Iterator[Path]:
    """bus_server.py owning `names` on the bus at `address`, recording calls into `record`."""
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
    proc = subprocess.Popen([sys.executable, str(HERE / "bus_server.py"), str(record), *names],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "ready", f"bus_server.py said {line!r} (exit {proc.poll()})"
        yield record
    finally:
        _stop(proc)


@contextmanager
def xvfb(width: int = 320, height: int = 120) -> Iterator[str]:
    """An Xvfb server on a display number it picks itself (-displayfd); yields ":N"."""
    exe = need("Xvfb", "xvfb")
    read, write = os.pipe()
    # -noreset: by default the server resets when its last client leaves, refusing connections
    # meanwhile, and the tests connect and disconnect all the time.
    proc = subprocess.Popen([exe, "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
                             "-noreset"],
                            pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()
        assert number.isdigit(), f"Xvfb did not report a display ({number!r}, exit {proc.poll()})"
        yield f":{number}"
    finally:
        _stop(proc)


def tray_owner(display: str) -> int:
    """The window id owning the X system tray selection on `display`, 0 if none."""
    import Xlib.display

    d = Xlib.display.Display(display)
    try:
        owner = d.get_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"))
        return 0 if owner in (None, 0) or getattr(owner, "id", 0) == 0 else owner.id
    finally:
        d.close()


@contextmanager
def trayer(display: str) -> Iterator[subprocess.Popen]:
    """Debian's `trayer` as the tray host on `display`, once it owns the tray selection."""
    exe = need("trayer", "trayer")
    proc = subprocess.Popen([exe, "--edge", "top", "--align", "left", "--widthtype", "pixel", "--width", "120",
                             "--heighttype", "pixel", "--height", "26", "--iconspacing", "0", "--tint", "0x000000",
                             "--transparent", "false", "--SetDockType", "false"],
                            env=dict(os.environ, DISPLAY=display), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: tray_owner(display) or proc.poll() is not None, "trayer to own the tray selection")
        if proc.poll() is not None:
            raise AssertionError(f"trayer exited {proc.returncode}: {proc.stderr.read().strip()}")
        yield proc
    finally:
        _stop(proc)


def screenshot(display: str):
    """The root window of `display` as a Pillow RGB image (python-xlib get_image)."""
    import Xlib.display
    import Xlib.X
    from PIL import Image

    d = Xlib.display.Display(display)
    try:
        root = d.screen().root
        geo = root.get_geometry()
        raw = root.get_image(0, 0, geo.width, geo.height, Xlib.X.ZPixmap, 0xFFFFFFFF)
        return Image.frombytes("RGB", (geo.width, geo.height), raw.data, "raw", "BGRX")
    finally:
        d.close()


def pixels(img, colour, tolerance=0) -> int:
    """Opaque pixels of `colour` in a Pillow image; a tolerance absorbs a tray's resampling of the icon."""
    import numpy as np

    a = np.asarray(img.convert("RGBA")).astype(int)
    near = (abs(a[..., :3] - colour) <= tolerance).all(axis=-1)
    return int((near & (a[..., 3] == 255)).sum())
