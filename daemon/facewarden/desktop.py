"""Living on a desktop: `facewarden install`, `uninstall` and `doctor`, and the systemd user units.

The units ship in the repo's `systemd/` directory; install copies them into the user's systemd
directory with ExecStart pointing at the facewarden executable it was run from. Nothing the user
enrolled or configured is overwritten: the default config is written only where there is none, and
uninstall keeps config, enrollment and models unless asked to purge.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import UserError

UNITS = ("facewarden.service", "facewarden-tray.service")
DAEMON_UNIT = UNITS[0]
UNIT_SOURCE = Path(__file__).resolve().parents[2] / "systemd"
SYSTEMCTL_TIMEOUT_S = 20


def user_unit_dir() -> Path:
    """Where systemd looks for the user's own units (XDG_CONFIG_HOME, not FACEWARDEN_HOME: systemd
    knows nothing of the latter)."""
    return paths._xdg("XDG_CONFIG_HOME", ".config") / "systemd" / "user"


def facewarden_executable() -> Path:
    """The facewarden this command was started as, so the units run the same installation."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "facewarden" and os.access(argv0, os.X_OK) and argv0.is_file():
        return argv0.absolute()
    found = shutil.which("facewarden")
    if found:
        return Path(found).absolute()
    raise UserError("cannot find the facewarden executable (run install through the installed `facewarden` command)")


def _quote(value: str, command: bool = False) -> str:
    """`value` as one systemd word: units split values like a shell and expand %-specifiers, and
    command lines also $VARIABLES."""
    value = value.replace("%", "%%")
    if command:
        value = value.replace("$", "$$")
    if re.search(r'[\s"\'\\]', value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def render_unit(text: str, executable: Path, home: Path | None = None) -> str:
    """The unit `text` with every ExecStart running `executable` instead of the shipped path, and,
    when facewarden runs from one directory (FACEWARDEN_HOME), that directory passed on and
    writable despite ProtectSystem=strict."""
    out = re.sub(r"(?m)^ExecStart=\S+", lambda _: f"ExecStart={_quote(str(executable), command=True)}", text)
    if home is not None:
        extra = f"Environment={_quote(f'FACEWARDEN_HOME={home}')}\n"
        if "ProtectSystem=" in out:
            extra += f"ReadWritePaths={_quote(str(home))}\n"
        out = re.sub(r"(?m)^(ExecStart=.*\n)", lambda m: m.group(1) + extra, out, count=1)
    return out


def write_default_config() -> Path:
    """The user's config file, written from the documented default only if there is none."""
    from .config import default_text

    path = paths.paths().config_file
    if not path.exists():
        paths.write_private(path, default_text().encode("utf-8"))
    return path


def _systemctl(*args: str) -> subprocess.CompletedProcess | None:
    """`systemctl --user ARGS`, or None when there is no systemctl."""
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, "--user", *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", "systemctl timed out")


def systemd_user_running() -> bool:
    """Whether a systemd user instance answers here (not in containers, plain X sessions, CI)."""
    result = _systemctl("show-environment")
    return result is not None and result.returncode == 0


def _enrolled() -> bool:
    return (paths.paths().models_dir / "owner.json").exists()


def install(args) -> int:
    exe = facewarden_executable()
    if not UNIT_SOURCE.is_dir():
        raise UserError(f"the unit files are missing ({UNIT_SOURCE}): install facewarden from its source tree")
    home = Path(os.environ["FACEWARDEN_HOME"]).expanduser().absolute() if os.environ.get("FACEWARDEN_HOME") else None
    unit_dir = user_unit_dir()
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name in UNITS:
        text = render_unit((UNIT_SOURCE / name).read_text(encoding="utf-8"), exe, home)
        target = unit_dir / name
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old == text:
            print(f"unchanged {target}")
            continue
        # 0644 like any unit: it holds no secret, and tools other than systemd read units too.
        _write_public(target, text)
        print(f"{'updated' if old is not None else 'wrote'} {target} (runs {exe})")

    config_file = paths.paths().config_file
    if config_file.exists():
        print(f"kept your config {config_file}")
    else:
        write_default_config()
        print(f"wrote the default config {config_file}")
    if home is not None:
        paths.private_dir(home)  # ReadWritePaths= needs it to exist when the unit starts
        print(f"the units run with FACEWARDEN_HOME={home}, as this install did")

    if shutil.which("systemctl") is None:
        print("no systemctl here: units written, not enabled; start `facewarden run` and `facewarden tray` yourself")
        return 0
    # enable works on the files alone, so the units start at the next login even when no user
    # manager runs right now; starting them needs one.
    running = systemd_user_running()
    if running:
        _check(_systemctl("daemon-reload"), "daemon-reload")
    if running and _enrolled():
        _check(_systemctl("enable", "--now", *UNITS), "enable --now")
        print(f"enabled and started {' '.join(UNITS)}")
        return 0
    _check(_systemctl("enable", *UNITS), "enable")
    if not running:
        print(f"enabled {' '.join(UNITS)} for your next graphical login (no systemd user instance runs here now)")
    else:
        # Started without an owner model the daemon would only fail and restart.
        print(f"enabled {' '.join(UNITS)}; not started: enroll and train first, then "
              f"`systemctl --user start {' '.join(UNITS)}`")
    return 0


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _check(result: subprocess.CompletedProcess | None, what: str) -> None:
    if result is not None and result.returncode != 0:
        raise UserError(f"systemctl --user {what} failed: {(result.stderr or result.stdout).strip()}")


def uninstall(args) -> int:
    unit_dir = user_unit_dir()
    present = [name for name in UNITS if (unit_dir / name).exists()]
    running = systemd_user_running()
    # Disabling a unit that is not installed is an error, so only ours that exist; like enable,
    # disable works on the files alone when no user manager runs.
    if present and shutil.which("systemctl"):
        _check(_systemctl("disable", *(["--now"] if running else []), *present), "disable")
        print(f"{'stopped and ' if running else ''}disabled {' '.join(present)}")
    for name in present:
        (unit_dir / name).unlink()
        print(f"removed {unit_dir / name}")
    if not present:
        print(f"no facewarden units in {unit_dir}")
    elif running:
        _check(_systemctl("daemon-reload"), "daemon-reload")
    p = paths.paths()
    dirs = list(dict.fromkeys([p.config_dir, p.data_dir, p.state_dir, p.cache_dir]))
    if getattr(args, "purge", False):
        for d in dirs:
            if d.exists():
                shutil.rmtree(d)
                print(f"purged {d}")
    else:
        kept = [str(d) for d in dirs if d.exists()]
        if kept:
            print(f"kept your config, enrollment and models in {', '.join(kept)} (`uninstall --purge` removes them)")
    return 0


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
    from .config import ConfigError, load

    path = paths.paths().config_file
    try:
        cfg = load(path)
    except ConfigError as e:
        return Check("config", False, str(e).replace("\n", "; "), fix=f"edit {path}"), None
    where = str(path) if path.exists() else f"defaults ({path} does not exist)"
    return Check("config", True, where), cfg


def check_camera(cfg, status: dict | None) -> Check:
    from .camera import Camera

    source = cfg.camera.source
    if status is not None:
        # The running daemon may hold the webcam open; ask it instead of fighting it for the device.
        ok = status.get("camera") == "ok"
        return Check("camera", ok, f"the running daemon reports camera {status.get('camera')} ({source})",
                     fix="check the webcam is connected and camera.source in the config")
    # The camera logs its failure for the daemon's journal; doctor says it in its own line.
    logging.getLogger("facewarden.camera").setLevel(logging.ERROR)
    try:
        cam = Camera(cfg.camera)
    except UserError as e:
        return Check("camera", False, str(e), fix="set camera.source to your webcam (0, /dev/video0)")
    try:
        frame = cam.read()
    except Exception:  # ReplayEnded (an empty video) or an OpenCV error: no frame either way
        frame = None
    finally:
        cam.release()
    if frame is None:
        return Check("camera", False, f"cannot read a frame from {source}",
                     fix="connect the webcam, close programs using it, and check you are in the `video` group")
    return Check("camera", True, f"{source} gives {frame.shape[1]}x{frame.shape[0]} frames")


def check_model(cfg) -> Check:
    """Load the owner model exactly as the daemon does (owner.json checked, model file run by LiteRT)."""
    from .verifier import Verifier

    try:
        verifier = Verifier.from_config(cfg, paths.paths())
    except UserError as e:  # its message already says what to run
        return Check("model", False, str(e))
    except Exception as e:  # a damaged model file: whatever LiteRT or Keras raise
        return Check("model", False, f"the owner model does not load: {e}", fix="run `facewarden train` again")
    t = verifier.thresholds
    where = "from the config" if cfg.model.threshold is not None else "calibrated by train"
    return Check("model", True, f"owner.{'h5' if cfg.model.runtime == 'h5' else 'tflite'} loads; "
                 f"threshold {t.colour:.3f} (grey/IR frames {t.grey:.3f}), {where}")


def _has_session() -> bool:
    """Whether logind knows a session of ours that `loginctl lock-session` could lock."""
    try:
        result = subprocess.run(["loginctl", "show-user", str(os.getuid()), "-p", "Sessions", "--value"],
                                capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def lock_methods(cfg) -> list[str]:
    """The configured lock methods that can work here, in the configured order (none is tried)."""
    from . import dbus

    usable = []
    for method in cfg.lock.methods:
        if method == "command" and cfg.lock.command and shutil.which(cfg.lock.command[0]):
            usable.append(f"command ({cfg.lock.command[0]})")
        elif method == "loginctl" and shutil.which("loginctl") and _has_session():
            usable.append("loginctl")
        elif method == "screensaver":
            usable += [f"screensaver ({name})" for name in dbus.lock_services()[:1]]
        elif method == "xdg-screensaver" and shutil.which("xdg-screensaver"):
            usable.append("xdg-screensaver")
    return usable


def check_lock(cfg) -> Check:
    usable = lock_methods(cfg)
    if not usable:
        return Check("lock", False, f"none of lock.methods {cfg.lock.methods} is available here",
                     fix='set lock.command to your locker, e.g. ["swaylock", "-f"], or run inside a logind session')
    return Check("lock", True, usable[0] + (f" (also: {', '.join(usable[1:])})" if usable[1:] else ""))


def check_notifications() -> Check:
    from . import dbus

    ok = dbus.has_name("org.freedesktop.Notifications")
    return Check("notifications", ok, "a notification server is on the session bus" if ok else
                 "no notification server on the session bus", essential=False,
                 fix="run your desktop's notification daemon (e.g. dunst, xfce4-notifyd)")


def check_tray() -> Check:
    from .tray import sni_watcher, x_tray_owner

    hosts = [h for h, ok in (("StatusNotifierWatcher on D-Bus", sni_watcher()),
                             ("X system tray (_NET_SYSTEM_TRAY)", x_tray_owner())) if ok]
    return Check("tray", bool(hosts), ", ".join(hosts) or "no tray host", essential=False,
                 fix="GNOME: enable the AppIndicator extension; elsewhere add a system tray to the panel")


def check_units() -> Check:
    installed = (user_unit_dir() / DAEMON_UNIT).exists()
    if not systemd_user_running():
        text = "no systemd user instance here" + (" (units installed)" if installed else "")
        return Check("unit", False, text, essential=False, fix="run `facewarden run` yourself")
    if not installed:
        return Check("unit", False, f"{DAEMON_UNIT} is not installed", essential=False, fix="facewarden install")
    enabled = _systemctl("is-enabled", DAEMON_UNIT).stdout.strip()
    active = _systemctl("is-active", DAEMON_UNIT).stdout.strip()
    ok = active == "active"
    return Check("unit", ok, f"{DAEMON_UNIT} is {enabled} and {active}", essential=False,
                 fix=f"systemctl --user start {DAEMON_UNIT}; journalctl --user -u {DAEMON_UNIT}")


def daemon_status() -> dict | None:
    from .tray import _default_request, poll

    return poll(_default_request)


def doctor(args) -> int:
    status = daemon_status()
    print(("ok   daemon: running, " + status.get("state", "?")) if status else
          "warn daemon: not running -- fix: facewarden install, or `facewarden run`")
    config_check, cfg = check_config()
    checks = [config_check]
    if cfg is not None:
        checks += [check_camera(cfg, status), check_model(cfg), check_lock(cfg)]
    checks += [check_notifications(), check_tray(), check_units()]
    for c in checks:
        print(c.line(), flush=True)
    return 1 if any(not c.ok and c.essential for c in checks) else 0
