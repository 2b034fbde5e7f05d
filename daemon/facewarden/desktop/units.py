"""The systemd user units: `facewarden install` and `uninstall`.

The units ship inside the package (`facewarden/data/systemd`); install copies them into the user's systemd
directory with ExecStart pointing at the facewarden executable it was run from. Nothing the user
enrolled or configured is overwritten: the default config is written only where there is none, and
uninstall keeps config, enrollment and models unless asked to purge.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

from .. import paths
from ..config import write_default
from ..errors import UserError

UNITS = ("facewarden.service", "facewarden-tray.service")
DAEMON_UNIT = UNITS[0]
# Shipped inside the package (a wheel has no source tree): read through importlib.resources.
UNIT_SOURCE = resources.files("facewarden").joinpath("data", "systemd")
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
    from ..recognition import ownerfile

    try:
        return (ownerfile.model_dir(paths.paths()) / "owner.json").exists()
    except UserError:
        return False


def install(say: Callable[[str], None]) -> None:
    exe = facewarden_executable()
    home = Path(os.environ["FACEWARDEN_HOME"]).expanduser().resolve() if os.environ.get("FACEWARDEN_HOME") else None
    unit_dir = user_unit_dir()
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name in UNITS:
        text = render_unit(UNIT_SOURCE.joinpath(name).read_text(encoding="utf-8"), exe, home)
        target = unit_dir / name
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old == text:
            say(f"unchanged {target}")
            continue
        # 0644 like any unit: it holds no secret, and tools other than systemd read units too.
        _write_public(target, text)
        say(f"{'updated' if old is not None else 'wrote'} {target} (runs {exe})")

    config_file = paths.paths().config_file
    if config_file.exists():
        say(f"kept your config {config_file}")
    else:
        write_default(config_file)
        say(f"wrote the default config {config_file}")
    if home is not None:
        paths.private_dir(home)  # ReadWritePaths= needs it to exist when the unit starts
        say(f"the units run with FACEWARDEN_HOME={home}, as this install did")

    if shutil.which("systemctl") is None:
        say("no systemctl here: units written, not enabled; start `facewarden run` and `facewarden tray` yourself")
        return
    # enable works on the files alone, so the units start at the next login even when no user
    # manager runs right now; starting them needs one.
    running = systemd_user_running()
    if running:
        _check(_systemctl("daemon-reload"), "daemon-reload")
    if running and _enrolled():
        _check(_systemctl("enable", "--now", *UNITS), "enable --now")
        say(f"enabled and started {' '.join(UNITS)}")
        return
    _check(_systemctl("enable", *UNITS), "enable")
    if not running:
        say(f"enabled {' '.join(UNITS)} for your next graphical login (no systemd user instance runs here now)")
    else:
        # Started without an owner model the daemon would only fail and restart.
        say(f"enabled {' '.join(UNITS)}; not started: enroll and train first, then "
              f"`systemctl --user start {' '.join(UNITS)}`")


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _check(result: subprocess.CompletedProcess | None, what: str) -> None:
    if result is not None and result.returncode != 0:
        raise UserError(f"systemctl --user {what} failed: {(result.stderr or result.stdout).strip()}")


def uninstall(purge: bool, say: Callable[[str], None]) -> None:
    unit_dir = user_unit_dir()
    present = [name for name in UNITS if (unit_dir / name).exists()]
    running = systemd_user_running()
    # Disabling a unit that is not installed is an error, so only ours that exist; like enable,
    # disable works on the files alone when no user manager runs.
    if present and shutil.which("systemctl"):
        _check(_systemctl("disable", *(["--now"] if running else []), *present), "disable")
        say(f"{'stopped and ' if running else ''}disabled {' '.join(present)}")
    for name in present:
        (unit_dir / name).unlink()
        say(f"removed {unit_dir / name}")
    if not present:
        say(f"no facewarden units in {unit_dir}")
    elif running:
        _check(_systemctl("daemon-reload"), "daemon-reload")
    p = paths.paths()
    dirs = list(dict.fromkeys([p.config_dir, p.data_dir, p.state_dir, p.cache_dir]))
    if purge:
        from .purge import purge as remove

        for d, others in remove(p):
            if not others:
                say(f"purged {d}")
                continue
            names = ", ".join(str(k.relative_to(d)) for k in others[:5])
            names += f" and {len(others) - 5} more" if others[5:] else ""
            say(f"kept {d}: it holds what facewarden did not make ({names}); facewarden's own files are gone")
    else:
        kept = [str(d) for d in dirs if d.exists()]
        if kept:
            say(f"kept your config, enrollment and models in {', '.join(kept)} (`uninstall --purge` removes them)")
