"""`facewarden doctor`: what works here and what does not, one check a line. Each check reuses the
code the daemon runs (the config loader, the camera, the verifier, the lock back-ends' `available`)."""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

from .. import paths
from ..errors import UserError
from ..service import dbus, lock
from .units import DAEMON_UNIT, _systemctl, systemd_user_running, user_unit_dir

# -- doctor -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    text: str
    essential: bool = True
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.essential else "warn")
        return f"{mark} {self.name}: {self.text}" + (f" -- fix: {self.fix}" if not self.ok and self.fix else "")


def check_config():
    from ..config import ConfigError, load

    path = paths.paths().config_file
    try:
        cfg = load(path)
    except ConfigError as e:
        return Check("config", False, str(e).replace("\n", "; "), fix=f"edit {path}"), None
    where = str(path) if path.exists() else f"defaults ({path} does not exist)"
    return Check("config", True, where), cfg


def check_camera(cfg, status: dict | None) -> Check:
    from ..service.camera import Cameras

    source = ", ".join(str(s) for s in cfg.camera.sources)
    if status is not None:
        # The running daemon may hold the webcam open; ask it instead of fighting it for the device.
        camera = status.get("camera")
        detail = status.get("camera_in_use") or source
        if camera == "busy":
            detail = f"held by {status.get('camera_busy_by')}; camera.when_busy = {cfg.camera.when_busy!r}"
        return Check("camera", camera in ("ok", "busy"), f"the running daemon reports camera {camera} ({detail})",
                     fix="check the webcam is connected and camera.source in the config")
    # The camera logs its failure for the daemon's journal; doctor says it in its own line.
    logging.getLogger(Cameras.__module__).setLevel(logging.ERROR)
    try:
        cams = Cameras(cfg.camera)
    except UserError as e:
        return Check("camera", False, str(e), fix="set camera.source to your webcam (0, /dev/video0)")
    try:
        frame = cams.read()
    except Exception:  # ReplayEnded (an empty video) or an OpenCV error: no frame either way
        frame = None
    finally:
        cams.close()
    if frame is None or cams.in_use is None:
        if cams.busy_by:
            return Check("camera", False, f"{source} is busy: held by {cams.busy_by}", essential=False,
                         fix="the daemon takes it back once that program lets go")
        return Check("camera", False, f"cannot read a frame from {source}",
                     fix="connect the webcam, close programs using it, and check you are in the `video` group")
    return check_dark(cfg, frame, cams.in_use) or \
        Check("camera", True, f"{cams.in_use.source} gives {frame.shape[1]}x{frame.shape[0]} frames")


# -- IR cameras ---------------------------------------------------------------------------------
# Face-unlock laptops have a second, infrared camera, which delivers dark frames until its emitter
# is switched on by a vendor-specific UVC control that Linux does not send by itself.

SYS_V4L = "/sys/class/video4linux"
IR_NAME = re.compile(r"(?<![a-z])(ir|infra-?red)(?![a-z])", re.IGNORECASE)
GREY_FORMATS = {"GREY", "Y10 ", "Y12 ", "Y16 ", "Y10B", "Y8I ", "Y12I", "Y16I"}  # V4L2 fourccs, luma only
VIDIOC_ENUM_FMT = 0xC0405602  # _IOWR('V', 2, struct v4l2_fmtdesc), 64 bytes
EMITTER_FIX = ("switch its emitter on with linux-enable-ir-emitter (`sudo linux-enable-ir-emitter configure`, "
               "github.com/EmixamPP/linux-enable-ir-emitter), or set camera.source to the colour camera")


def v4l2_formats(node: str) -> list[str]:
    """The capture formats (fourcc) `node` offers; [] when it is not a V4L2 device or cannot be opened."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    found = []
    try:
        for index in range(64):
            desc = bytearray(struct.pack("=II", index, 1) + bytes(56))  # index, V4L2_BUF_TYPE_VIDEO_CAPTURE
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FMT, desc)
            except OSError:  # EINVAL past the last format; ENOTTY for anything not V4L2
                break
            found.append(desc[44:48].decode("ascii", "replace"))
    finally:
        os.close(fd)
    return found


def camera_name(node: str, sys_root: str = SYS_V4L) -> str:
    """The driver's name for a /dev/videoN node ("Integrated IR Camera"); "" when unknown."""
    try:
        with open(os.path.join(sys_root, os.path.basename(os.path.realpath(node)), "name"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def ir_evidence(node: str | None, frame: np.ndarray | None, sys_root: str = SYS_V4L) -> str | None:
    """What says this is an IR camera: its name, grey-only formats, grey frames; None if nothing does."""
    found = []
    if node is not None:
        name = camera_name(node, sys_root)
        if IR_NAME.search(name):
            found.append(f"named {name!r}")
        formats = v4l2_formats(node)
        if formats and set(formats) <= GREY_FORMATS:
            found.append("grey-only formats " + ", ".join(f.strip() for f in formats))
    # Colour noise shows in a colour camera's dark frames; identical channels with some signal in
    # them come from a grey sensor. (An all-black frame says nothing either way.)
    if frame is not None and frame.ndim == 3 and frame.max() >= 16 and \
            np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 1], frame[..., 2]):
        found.append("grey frames")
    return "; ".join(found) or None


def check_dark(cfg, frame: np.ndarray, camera) -> Check | None:
    """A camera that delivers frames too dark to judge: an IR camera with its emitter off, or a dark room."""
    from ..recognition.vision import brightness

    level, limit = brightness(frame), cfg.camera.dark_threshold
    if level >= limit:
        return None
    dark = f"dark frames (mean grey {level:.0f} < camera.dark_threshold {limit:g})"
    ir = ir_evidence(camera.target if camera.device is not None else None, frame)
    if ir is not None:
        return Check("camera", False, f"{camera.source} is an IR camera ({ir}) giving {dark}: its emitter is off",
                     fix=EMITTER_FIX)
    return Check("camera", False, f"{camera.source} gives {dark}", essential=False,
                 fix="light the room, uncover the camera or open the lid")


def check_devices(dev: str = "/dev", sys_root: str = SYS_V4L) -> Check:
    """The V4L2 cameras here, their stable names, and who else holds one."""
    from ..service.holders import holders

    nodes = sorted(glob.glob(f"{dev}/video*"), key=lambda n: (len(n), n))
    names: dict[str, list[str]] = {}
    for link in sorted(glob.glob(f"{dev}/v4l/by-id/*")):
        names.setdefault(os.path.realpath(link), []).append(os.path.basename(link))
    if not nodes:
        return Check("cameras", False, f"no {dev}/video* device here", essential=False,
                     fix="connect a webcam (a replayed camera.source needs none)")
    listed, held = [], []
    for node in nodes:
        # By name only: opening the node to list its formats would look, to a running daemon, like
        # another program taking the camera.
        ir = " [IR]" if IR_NAME.search(camera_name(node, sys_root)) else ""
        listed.append(node + "".join(f" ({n})" for n in names.get(node, [])) + ir)
        held += [f"{node} held by {h}" for h in holders(node)]
    held_text = "; ".join(held) if held else "none held by another program"
    return Check("cameras", True, f"{', '.join(listed)}; {held_text}", essential=False)


def check_when_busy(cfg, idle: Check) -> Check:
    """What a busy camera (a video call) does to the lock here: "idle" needs the `idle` check's source."""
    policy = cfg.camera.when_busy
    if policy != "idle":
        return Check("when_busy", True, {"pause": "never locks while another program holds the camera",
                                         "lock": "fails closed while another program holds the camera"}[policy])
    if not idle.ok:
        return Check("when_busy", False, '"idle" falls back to "lock" here: no idle-input source', essential=False,
                     fix='set camera.when_busy = "pause" to keep the session open during calls')
    return Check("when_busy", True, f"idle: during a video call, locks after lock.idle_s = {cfg.lock.idle_s:g} s "
                 f"without input ({idle.text})")


def check_model(cfg) -> Check:
    """Load the owner model exactly as the daemon does (owner.json checked, model file run by LiteRT)."""
    from ..recognition.verifier import Verifier

    try:
        verifier = Verifier.from_config(cfg, paths.paths())
    except UserError as e:  # its message already says what to run
        return Check("model", False, str(e))
    except Exception as e:  # a damaged model file: whatever LiteRT or Keras raise
        return Check("model", False, f"the owner model does not load: {e}", fix="run `facewarden train` again")
    t = verifier.thresholds
    where = "from the config" if cfg.model.threshold is not None else "calibrated by train"
    runs = (f"{verifier.model.weights} weights, {cfg.model.threads} inference thread(s)"
            if cfg.model.runtime != "h5" else "through TensorFlow")
    return Check("model", True, f"owner.{'h5' if cfg.model.runtime == 'h5' else 'tflite'} loads ({runs}); "
                 f"threshold {t.colour:.3f} (grey/IR frames {t.grey:.3f}), {where}")


def check_hooks() -> Check:
    """The hooks the daemon would skip (another user owns or can write them), each with its fix."""
    from ..events import Event
    from ..service.hooks import refused, scripts

    hooks_dir = paths.paths().hooks_dir
    events = [e.value for e in Event]
    skipped = refused(hooks_dir, events)
    if skipped:
        return Check("hooks", False, f"{len(skipped)} skipped, not yours alone: " + "; ".join(w for _, w in skipped),
                     essential=False, fix="make each yours and not writable by others, or remove it")
    runs = sum(len(scripts(hooks_dir, e)) for e in events)
    return Check("hooks", True, f"{runs} hook(s) in {hooks_dir}, all yours alone", essential=False)


def lock_methods(cfg) -> list[str]:
    """The configured lock back-ends that can work here, in the configured order (none is tried)."""
    return [what for what in (b.available() for b in lock.backends(cfg.lock)) if what]


def check_locking(cfg) -> list[Check]:
    """Which events lock: none at all is a failure (facewarden's one promise), and owner_left or
    stranger_detected without it a warning (a user's [actions] table may take it away on purpose)."""
    from ..events import Action, Event

    locking = [e.value for e, actions in cfg.actions.items() if Action.LOCK in actions]
    if not locking:
        return [Check("locking", False, "no event locks the session ([actions] has no \"lock\")",
                      fix='add "lock" to actions.owner_left and actions.stranger_detected')]
    missing = [e.value for e in (Event.OWNER_LEFT, Event.STRANGER_DETECTED)
               if Action.LOCK not in cfg.actions.get(e, [])]
    text = f"locks on {', '.join(locking)}"
    return [Check("locking", not missing, text + (f"; not on {', '.join(missing)}" if missing else ""),
                  essential=False, fix=f'add "lock" to actions.{missing[0]}' if missing else "")]


def check_lock(cfg) -> Check:
    usable = lock_methods(cfg)
    if not usable:
        return Check("lock", False, f"none of lock.methods {cfg.lock.methods} is available here",
                     fix='set lock.command to your locker, e.g. ["swaylock", "-f"], or run inside a logind session')
    return Check("lock", True, usable[0] + (f" (also: {', '.join(usable[1:])})" if usable[1:] else ""))


def check_dim(cfg) -> Check:
    """Which dimming back-end works here (the first of dim.methods that does) and why the others do not."""
    from ..service import dim

    usable, reasons = [], []
    for backend in dim.backends(cfg.dim):
        what = backend.available()
        if what:
            usable.append(what)
        else:
            reasons.append(f"{backend.name}: {backend.problem}")
    why_not = f"; not: {'; '.join(reasons)}" if reasons else ""
    if not usable:
        return Check("dim", False, f"no dimming back-end works here{why_not}", essential=False,
                     fix="a laptop panel with logind, KDE, GNOME, or X11 with xrandr (the warnings still run hooks)")
    return Check("dim", True, usable[0] + (f" (also: {', '.join(usable[1:])})" if usable[1:] else "") + why_not,
                 essential=False)


def check_power(cfg, status: dict | None) -> Check:
    """On battery (UPower), the sampling intervals stretch by sampling.battery_factor."""
    from ..service.dbus import Bus, system_bus_address
    from ..service.surroundings import on_battery

    if status is not None and "on_battery" in status:
        battery = status["on_battery"]
    else:
        bus = Bus.open(system_bus_address(), "system")
        try:
            battery = on_battery(bus) if bus is not None else None
        finally:
            if bus is not None:
                bus.close()
    factor = cfg.sampling.battery_factor
    text = {None: "UPower does not say (intervals as configured)",
            False: f"on mains power (on battery the intervals stretch x{factor:g})",
            True: f"on battery: sampling intervals x{factor:g} (sampling.battery_factor)"}[battery]
    return Check("power", True, text, essential=False)


def check_notifications() -> Check:
    ok = dbus.has_name("org.freedesktop.Notifications")
    return Check("notifications", ok, "a notification server is on the session bus" if ok else
                 "no notification server on the session bus", essential=False,
                 fix="run your desktop's notification daemon (e.g. dunst, xfce4-notifyd)")


def check_tray() -> Check:
    from .sni import which

    found = which()
    return Check("tray", found is not None, "no tray host" if found is None else f"{found[0]}: {found[1]}",
                 essential=False, fix="GNOME: enable the AppIndicator extension; elsewhere add a system tray "
                 "(waybar's tray module, a notification area) to the panel")


def check_session() -> list[Check]:
    """logind (the session's lock state, sleep) and the idle-input back-end, as the daemon finds them."""
    from ..service import idle
    from ..service.dbus import Bus
    from ..service.logind import Logind

    logind = Logind()
    session_bus = Bus.open(dbus.session_bus_address(), "session")
    try:
        where = logind.available() if logind.start() else None
        reachable = Check("logind", where is not None, where or str(logind.problem), essential=False,
                          fix="without logind the daemon sees only its own locks and no sleep; it still locks")
        answers = [what for what in (s.available() for s in idle.sources(session_bus, logind)) if what]
    finally:
        logind.close()
        if session_bus is not None:
            session_bus.close()
    text = answers[0] + (f" (also: {', '.join(answers[1:])})" if answers[1:] else "") if answers else \
        "no idle-input source here"
    idle_check = Check("idle", bool(answers), text, essential=False,
                       fix="an X11 session, GNOME, KDE, a Wayland compositor with ext-idle-notify-v1 or "
                       "org_kde_kwin_idle (the service needs WAYLAND_DISPLAY: `systemctl --user import-environment "
                       "WAYLAND_DISPLAY`), or a logind session that sets IdleHint")
    return [reachable, idle_check]


def check_units() -> Check:
    installed = (user_unit_dir() / DAEMON_UNIT).exists()
    if not systemd_user_running():
        text = "no systemd user instance here" + (" (units installed)" if installed else "")
        return Check("unit", False, text, essential=False, fix="run `facewarden run` yourself")
    if not installed:
        return Check("unit", False, f"{DAEMON_UNIT} is not installed", essential=False, fix="facewarden install")
    enabled, active = (getattr(_systemctl(verb, DAEMON_UNIT), "stdout", "").strip()
                       for verb in ("is-enabled", "is-active"))
    ok = active == "active"
    return Check("unit", ok, f"{DAEMON_UNIT} is {enabled} and {active}", essential=False,
                 fix=f"systemctl --user start {DAEMON_UNIT}; journalctl --user -u {DAEMON_UNIT}")


def checks(status: dict | None) -> list[Check]:
    """Every check, in the order doctor prints them; `status`: the running daemon's, or None."""
    config_check, cfg = check_config()
    found = [config_check]
    session = check_session()
    if cfg is not None:
        found += [check_camera(cfg, status), check_devices(), check_when_busy(cfg, session[1]), check_model(cfg),
                  *check_locking(cfg), check_lock(cfg), check_dim(cfg), check_power(cfg, status)]
    return found + [check_hooks(), check_notifications(), check_tray(), *session, check_units()]
