"""install / uninstall against a temporary HOME, the unit files through `systemd-analyze verify`,
and doctor on a real private bus and X server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import mode
from facewarden.desktop import units as desktop
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
        assert [line for line in text.splitlines() if not line.startswith("ExecStart=")] == \
               [line for line in shipped.splitlines() if not line.startswith("ExecStart=")]
    config = user_home / ".config/facewarden/config.toml"
    assert config.read_text() == default_text()
    assert mode(config) == 0o600 and mode(config.parent) == 0o700
    assert f"wrote {units / 'facewarden.service'}" in r.stdout
    assert f"wrote the default config {config}" in r.stdout
    wants = user_home / ".config/systemd/user/graphical-session.target.wants"
    if shutil.which("systemctl") is None:
        assert "no systemctl here: units written, not enabled" in r.stdout and not wants.exists()
    else:
        # No user manager runs in a test: the real systemctl enables on the files alone, so the
        # units start at the next login.
        assert not desktop.systemd_user_running()
        assert "for your next graphical login" in r.stdout
        assert sorted(p.name for p in wants.iterdir()) == sorted(desktop.UNITS)
        assert all(p.resolve() == units / p.name for p in wants.iterdir())

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
    wants = user_home / ".config/systemd/user/graphical-session.target.wants"
    assert not wants.exists() or not any(wants.iterdir())  # no dangling enable links
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
    # systemd splits ExecStart like a shell and expands %-specifiers and $VARIABLES there.
    awkward = desktop.render_unit(text, Path("/home/a b/100%/$x/facewarden"))
    assert 'ExecStart="/home/a b/100%%/$$x/facewarden" run\n' in awkward


def test_install_passes_facewarden_home_on(user_home, tmp_path):
    fwhome = tmp_path / "my profile"
    r = fw(user_home, "install", FACEWARDEN_HOME=str(fwhome))
    assert r.returncode == 0, r.stderr
    daemon = (user_home / ".config/systemd/user/facewarden.service").read_text()
    assert f'Environment="FACEWARDEN_HOME={fwhome}"\nReadWritePaths="{fwhome}"\n' in daemon
    tray_unit = (user_home / ".config/systemd/user/facewarden-tray.service").read_text()
    assert f'Environment="FACEWARDEN_HOME={fwhome}"\n' in tray_unit and "ReadWritePaths" not in tray_unit
    assert (fwhome / "config.toml").read_text() == default_text() and mode(fwhome) == 0o700
    assert not (user_home / ".config/facewarden").exists()
    exe = shutil.which("systemd-analyze")
    if exe is None:  # the quoting is systemd's to judge; everything above has passed
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    verify(user_home, exe)


def verify(user_home: Path, exe: str) -> None:
    units = [str(user_home / ".config/systemd/user" / n) for n in desktop.UNITS]
    r = subprocess.run([exe, "verify", "--user", *units], env=user_env(user_home), capture_output=True, text=True,
                       timeout=120)
    # verify exits 0 on mere warnings (an unknown key, a bad value): any output is a failure too.
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_installed_units_pass_systemd_analyze_verify(user_home):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    assert fw(user_home, "install").returncode == 0
    verify(user_home, exe)

    broken = user_home / "broken.service"
    installed = user_home / ".config/systemd/user/facewarden.service"
    broken.write_text(installed.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    r = subprocess.run([exe, "verify", "--user", str(broken)], env=user_env(user_home), capture_output=True,
                       text=True, timeout=120)
    assert "sometimes" in r.stdout + r.stderr  # the check above would have caught it


# -- doctor -------------------------------------------------------------------------------------

def doctor_lines(r: subprocess.CompletedProcess) -> dict[str, str]:
    """doctor's output as {check name: whole line}."""
    return {line[5:].split(":", 1)[0]: line for line in r.stdout.splitlines()}


@pytest.fixture
def face_dir(tmp_path, astronaut_bgr):
    import cv2

    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "0001.jpg"), astronaut_bgr)
    return d


def test_doctor_on_a_desktop_with_bus_tray_and_camera(user_home, tmp_path, face_dir):
    from desktop_helpers.procs import bus_server, session_bus, trayer, xvfb

    fwhome = tmp_path / "fw"
    fwhome.mkdir()
    (fwhome / "config.toml").write_text(f'[camera]\nsource = "{face_dir}"\n')
    with session_bus(tmp_path) as bus, bus_server(bus, tmp_path / "calls.jsonl", "org.freedesktop.Notifications",
                                                  "org.freedesktop.ScreenSaver"), \
            xvfb() as display, trayer(display):
        r = fw(user_home, "doctor", FACEWARDEN_HOME=str(fwhome), DBUS_SESSION_BUS_ADDRESS=bus, DISPLAY=display)
    lines = doctor_lines(r)
    assert lines["daemon"].startswith("warn daemon: not running")
    assert lines["config"] == f"ok   config: {fwhome / 'config.toml'}"
    assert lines["camera"] == f"ok   camera: {face_dir} gives 512x512 frames"
    assert lines["model"].startswith("FAIL model: no owner model in ") and "facewarden train" in lines["model"]
    assert lines["lock"].startswith("ok   lock: screensaver (org.freedesktop.ScreenSaver)")
    assert lines["notifications"] == "ok   notifications: a notification server is on the session bus"
    assert lines["tray"] == ("ok   tray: XEmbed (pystray): no org.kde.StatusNotifierWatcher on the session bus; "
                             "an X system tray owns _NET_SYSTEM_TRAY")
    assert lines["unit"].startswith("warn unit: ")
    assert r.returncode == 1  # the model is essential
    # doctor looked (the idle check asks GetSessionIdleTime), it did not lock or notify.
    record = tmp_path / "calls.jsonl"
    calls = [json.loads(line)["member"] for line in record.read_text().splitlines()] if record.exists() else []
    assert set(calls) <= {"GetSessionIdleTime"}


def test_doctor_where_nothing_is_there(user_home, tmp_path):
    fwhome = tmp_path / "fw"
    fwhome.mkdir()
    (fwhome / "config.toml").write_text('[camera]\nsource = "/dev/video99"\n[lock]\nmethods = ["screensaver"]\n')
    r = fw(user_home, "doctor", FACEWARDEN_HOME=str(fwhome), DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/nobus")
    lines = doctor_lines(r)
    assert lines["camera"].startswith("FAIL camera: cannot read a frame from /dev/video99 -- fix: ")
    assert lines["lock"].startswith("FAIL lock: none of lock.methods ['screensaver'] is available here -- fix: ")
    assert lines["notifications"].startswith("warn notifications: no notification server")
    assert lines["tray"].startswith("warn tray: no tray host -- fix: GNOME: enable the AppIndicator extension")
    assert r.returncode == 1 and r.stderr == ""


def test_doctor_reports_a_bad_config_and_asks_a_running_daemon(user_home, tmp_path, monkeypatch):
    from desktop_helpers.daemon_side import TestDaemon, serving

    fwhome = tmp_path / "fw"
    monkeypatch.setenv("FACEWARDEN_HOME", str(fwhome))
    with serving(TestDaemon({"state": "owner_absent", "camera": "lost"})):
        (fwhome / "config.toml").write_text("[camera]\nwidth = -1\n")
        r = fw(user_home, "doctor", FACEWARDEN_HOME=str(fwhome))
        lines = doctor_lines(r)
        assert lines["daemon"] == "ok   daemon: running, owner_absent"
        assert lines["config"].startswith(f"FAIL config: {fwhome / 'config.toml'}: camera.width: ")
        assert "camera" not in lines and r.returncode == 1

        (fwhome / "config.toml").write_text("[camera]\nsource = 0\n")
        lines = doctor_lines(fw(user_home, "doctor", FACEWARDEN_HOME=str(fwhome)))
        # The daemon holds the webcam: doctor asks it rather than opening the device a second time.
        assert lines["camera"].startswith("FAIL camera: the running daemon reports camera lost (0)")


def test_doctor_and_tray_never_load_tensorflow_or_pystray_on_their_own(tmp_path):
    # pystray connects to the display when imported, TensorFlow costs seconds and hundreds of MB:
    # neither belongs in doctor or in merely importing the tray module.
    code = ("import sys; from facewarden.desktop import tray, doctor; from facewarden.cli import main; main(['doctor']); "
            "print(sorted({'tensorflow', 'keras', 'pystray'} & set(sys.modules)))")
    env = dict(os.environ, FACEWARDEN_HOME=str(tmp_path), DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/nobus")
    env.pop("DISPLAY", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.splitlines()[-1] == "[]", r.stdout + r.stderr


def test_doctor_says_a_damaged_owner_model_does_not_load(user_home, tmp_path):
    import json

    from facewarden.recognition import assets

    models = tmp_path / "fw" / "models"
    models.mkdir(parents=True)
    (models / "owner.json").write_text(json.dumps(
        {"threshold": 0.5, "threshold_grey": 0.6, "encoder_sha256": assets.SFACE.sha256}))
    (models / "owner.tflite").write_bytes(b"not a flatbuffer")  # e.g. a disk that filled up mid-write
    r = fw(user_home, "doctor", FACEWARDEN_HOME=str(tmp_path / "fw"))
    line = doctor_lines(r)["model"]
    assert line.startswith("FAIL model: model file ") and "owner.tflite is not a usable TFLite model" in line, line
    assert r.returncode == 1
