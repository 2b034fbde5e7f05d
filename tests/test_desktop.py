"""install / uninstall against a temporary HOME, the unit files through `systemd-analyze verify`,
and doctor on a real private bus and X server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facewarden import desktop
from facewarden.config import default_text

REPO = Path(__file__).resolve().parent.parent
FACEWARDEN = Path(sys.executable).parent / "facewarden"


def user_env(home: Path, **extra) -> dict:
    """A login-like environment for a user whose home is `home`: XDG defaults, no FACEWARDEN_HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("XDG_") and k not in ("FACEWARDEN_HOME", "DBUS_SESSION_BUS_ADDRESS", "DISPLAY")}
    env |= {"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return env | extra


def fw(home: Path, *args: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([str(FACEWARDEN), *args], env=user_env(home, **extra), capture_output=True, text=True,
                          timeout=120)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def user_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_install_writes_units_and_default_config(user_home):
    r = fw(user_home, "install")
    assert r.returncode == 0, r.stderr
    units = user_home / ".config/systemd/user"
    for name in desktop.UNITS:
        text = (units / name).read_text()
        assert mode(units / name) == 0o644
        assert f"ExecStart={FACEWARDEN} " in text
        shipped = (REPO / "systemd" / name).read_text()
        # Only ExecStart differs from the shipped unit.
        assert [l for l in text.splitlines() if not l.startswith("ExecStart=")] == \
               [l for l in shipped.splitlines() if not l.startswith("ExecStart=")]
    config = user_home / ".config/facewarden/config.toml"
    assert config.read_text() == default_text()
    assert mode(config) == 0o600 and mode(config.parent) == 0o700
    assert f"wrote {units / 'facewarden.service'}" in r.stdout
    assert f"wrote the default config {config}" in r.stdout
    if not desktop.systemd_user_running():
        assert "no systemd user instance here" in r.stdout

    again = fw(user_home, "install")
    assert again.returncode == 0 and f"unchanged {units / 'facewarden.service'}" in again.stdout


def test_install_never_overwrites_the_users_config(user_home):
    config = user_home / ".config/facewarden/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[camera]\nsource = 2\n")
    r = fw(user_home, "install")
    assert r.returncode == 0, r.stderr
    assert config.read_text() == "[camera]\nsource = 2\n"
    assert f"kept your config {config}" in r.stdout


def test_uninstall_keeps_user_data_unless_purged(user_home):
    assert fw(user_home, "install").returncode == 0
    model = user_home / ".local/share/facewarden/models/owner.json"
    model.parent.mkdir(parents=True)
    model.write_text('{"threshold": 0.5}')
    other_tool = user_home / ".config/facelock/config"  # another tool's files: never ours to touch
    other_tool.parent.mkdir(parents=True)
    other_tool.write_text("x")

    r = fw(user_home, "uninstall")
    assert r.returncode == 0, r.stderr
    assert not any((user_home / ".config/systemd/user" / n).exists() for n in desktop.UNITS)
    assert model.exists() and (user_home / ".config/facewarden/config.toml").exists()
    assert "kept your config, enrollment and models" in r.stdout

    r = fw(user_home, "uninstall", "--purge")
    assert r.returncode == 0, r.stderr
    assert "no facewarden units" in r.stdout
    assert not (user_home / ".config/facewarden").exists() and not (user_home / ".local/share/facewarden").exists()
    assert other_tool.read_text() == "x"


def test_render_quotes_awkward_paths():
    text = "[Service]\nExecStart=%h/.local/bin/facewarden run\nExecReload=/bin/kill -HUP $MAINPID\n"
    assert desktop.render_unit(text, Path("/opt/fw/bin/facewarden")) == \
        "[Service]\nExecStart=/opt/fw/bin/facewarden run\nExecReload=/bin/kill -HUP $MAINPID\n"
    # systemd splits ExecStart like a shell and expands %-specifiers: quote, and double the %.
    assert "ExecStart=\"/home/a b/100%%/facewarden\" run\n" in desktop.render_unit(text, Path("/home/a b/100%/facewarden"))


def test_installed_units_pass_systemd_analyze_verify(user_home):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    assert fw(user_home, "install").returncode == 0
    units = [str(user_home / ".config/systemd/user" / n) for n in desktop.UNITS]
    r = subprocess.run([exe, "verify", "--user", *units], env=user_env(user_home), capture_output=True, text=True,
                       timeout=120)
    # verify exits 0 on mere warnings (an unknown key, a bad value): any output is a failure too.
    assert (r.returncode, r.stdout + r.stderr) == (0, "")

    broken = user_home / "broken.service"
    broken.write_text(Path(units[0]).read_text().replace("Restart=on-failure", "Restart=sometimes"))
    r = subprocess.run([exe, "verify", "--user", str(broken)], env=user_env(user_home), capture_output=True,
                       text=True, timeout=120)
    assert "sometimes" in r.stdout + r.stderr  # the check above would have caught it
