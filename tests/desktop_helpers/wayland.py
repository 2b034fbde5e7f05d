"""A real wlroots desktop for the Wayland tests: Debian's sway (headless, pixman), waybar as the
StatusNotifierItem host and watcher, grim for screenshots, swaylock as the locker.

sway refuses to run as root, so the compositor, waybar and the session bus they share run as an
unprivileged user (`nobody`) in a private XDG_RUNTIME_DIR; the bus's policy lets any user connect,
so the tests (root) talk to it too, and root may connect to nobody's Wayland socket.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from .procs import _stop, dbus_daemon, need, user_group, wait_for

WIDTH, BAR_HEIGHT = 480, 30

SESSION_POLICY = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={runtime}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Only the tray: nothing else on the bar changes between screenshots.
WAYBAR_CONFIG = {"layer": "top", "position": "top", "height": BAR_HEIGHT, "modules-right": ["tray"],
                 "tray": {"icon-size": 24, "spacing": 4}}
WAYBAR_STYLE = "* { border: none; min-height: 0; } window#waybar { background: #202020; }"


@dataclass
class Sway:
    runtime: Path
    bus: str  # the session bus's address
    uid: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a client of this desktop needs in its environment (no X display)."""
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        return env | {"XDG_RUNTIME_DIR": str(self.runtime), "WAYLAND_DISPLAY": "wayland-1",
                      "DBUS_SESSION_BUS_ADDRESS": self.bus}

    def spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        """`argv` as the desktop's user, logging to RUNTIME/NAME.log."""
        log = open(self.runtime / f"{name}.log", "w")
        home = str(self.runtime / "home")
        proc = subprocess.Popen(argv, env=self.env | {"HOME": home, **env}, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, user=self.uid, group=user_group(self.uid), extra_groups=[],
                                cwd=home)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.runtime / f"{name}.log").read_text(errors="replace")

    def start_waybar(self) -> subprocess.Popen:
        need("waybar", "waybar")
        proc = self.spawn("waybar", ["waybar", "-c", str(self.runtime / "waybar.json"),
                                     "-s", str(self.runtime / "waybar.css")])
        wait_for(lambda: proc.poll() is not None or has_name(self.bus, "org.kde.StatusNotifierWatcher"),
                 "waybar's StatusNotifierWatcher")
        if proc.poll() is not None:
            raise AssertionError(f"waybar exited {proc.returncode}: {self.log('waybar')[-2000:]}")
        return proc

    def swaymsg(self, *args: str) -> None:
        """A sway IPC command (`seat - cursor move 5 5` is input, as a mouse gives it)."""
        (sock,) = self.runtime.glob("sway-ipc.*.sock")
        subprocess.run([need("swaymsg", "sway"), "-s", str(sock), *args], check=True, timeout=30, capture_output=True)

    def stop(self, name: str) -> None:
        _stop(self.procs.pop(name))

    def screenshot(self, height: int = BAR_HEIGHT):
        """The top `height` rows of the output, through grim, as a Pillow RGB image."""
        from PIL import Image

        grim = need("grim", "grim")
        shot = self.runtime / "shot.png"
        subprocess.run([grim, "-g", f"0,0 {WIDTH}x{height}", str(shot)], env=self.env, check=True, timeout=30,
                       capture_output=True)
        with Image.open(shot) as img:
            return img.convert("RGB")


def has_name(address: str, name: str) -> bool:
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(address) as conn:
        return bool(conn.send_and_get_reply(message_bus.NameHasOwner(name), timeout=5).body[0])


@contextmanager
def sway(user: str = "nobody") -> Iterator[Sway]:
    """A headless sway as `user` on a private session bus; waybar is started with `start_waybar`."""
    exe = need("sway", "sway")
    uid = pwd.getpwnam(user).pw_uid
    if os.getuid() != 0:
        pytest.skip("the sway tests start sway as another user (sway refuses root): run them as root")
    # Not under pytest's tmp_path, which only root may enter.
    runtime = Path(tempfile.mkdtemp(prefix="fw-sway-"))
    (runtime / "home").mkdir()
    (runtime / "sway.conf").write_text(f"output HEADLESS-1 resolution {WIDTH}x240\nxwayland disable\n")
    (runtime / "waybar.json").write_text(json.dumps(WAYBAR_CONFIG))
    (runtime / "waybar.css").write_text(WAYBAR_STYLE)
    (runtime / "bus.conf").write_text(SESSION_POLICY.format(runtime=runtime))
    for p in (runtime, runtime / "home"):
        os.chown(p, uid, user_group(uid))
    runtime.chmod(0o700)
    try:
        with dbus_daemon(f"--config-file={runtime / 'bus.conf'}", user=uid) as bus:
            desk = Sway(runtime, bus, uid)
            proc = desk.spawn("sway", [exe, "-c", str(runtime / "sway.conf")], WLR_BACKENDS="headless",
                              WLR_RENDERER="pixman", WLR_LIBINPUT_NO_DEVICES="1")
            try:
                wait_for(lambda: proc.poll() is not None or (runtime / "wayland-1").exists(), "sway's socket")
                if proc.poll() is not None:
                    raise AssertionError(f"sway exited {proc.returncode}: {desk.log('sway')[-2000:]}")
                yield desk
            finally:
                for name in list(desk.procs):
                    desk.stop(name)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
