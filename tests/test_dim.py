"""The dimming back-ends and the desk's surroundings, for real: logind's SetBrightness through the
test logind on a private system bus (writing a temporary sysfs-like backlight directory, as the
kernel would), GNOME's brightness on a private session bus, xrandr on Xvfb; idle inhibitors,
UPower's OnBattery and the connected monitors as service/surroundings.py reads them."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from desktop_helpers.buses import desktop, drive, drive_logind, logind, system_bus
from desktop_helpers.procs import need, session_bus, xvfb
from facewarden.config import DimConfig
from facewarden.service.dbus import Bus
from facewarden.service.dim import Dimmer, XrandrGamma, backends
from facewarden.service import surroundings
from facewarden.service.surroundings import Surroundings
from support import mode, wait_for

GNOME_POWER = "org.gnome.SettingsDaemon.Power"


def backlight(root: Path, value: int = 800, top: int = 1000) -> Path:
    """A sysfs-like class directory with one backlight device; returns the device's brightness file."""
    device = root / "backlight" / "intel_backlight"
    device.mkdir(parents=True)
    (device / "max_brightness").write_text(f"{top}\n")
    (device / "brightness").write_text(f"{value}\n")
    return device / "brightness"


def brightness_calls(record: Path) -> list[list]:
    if not record.exists():
        return []
    return [r["args"] for r in map(json.loads, record.read_text().splitlines()) if r["what"] == "brightness"]


@pytest.fixture
def panel(tmp_path, monkeypatch):
    """The test logind with a backlight at 800 of 1000; yields (brightness file, logind's record)."""
    sysfs = tmp_path / "sys"
    level = backlight(sysfs)
    with system_bus(tmp_path) as address, logind(address, tmp_path / "logind.jsonl", sysfs=sysfs) as record:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "nobus"))  # no session bus to be found
        monkeypatch.delenv("DISPLAY", raising=False)
        yield level, record, sysfs, address


def dimmer(sysfs: Path, tmp: Path, methods=("logind", "kde", "gnome", "xrandr")) -> Dimmer:
    return Dimmer(DimConfig(sysfs=sysfs, methods=list(methods)), tmp / "run" / "dimmed.json")


def test_logind_dims_the_panel_and_restores_it_when_the_last_reason_is_withdrawn(panel, tmp_path):
    level, record, sysfs, _ = panel
    d = dimmer(sysfs, tmp_path)
    assert d.dim("owner_leaving")
    assert level.read_text().strip() == "240"  # 30% of 800, through logind as the kernel would show it
    assert brightness_calls(record) == [["backlight", "intel_backlight", 240]]
    assert mode(d.state_file) == 0o600 and mode(d.state_file.parent) == 0o700
    assert d.dim("owner_looking_away")  # a second reason holds the same dim: no second call
    assert d.restore("owner_leaving") and level.read_text().strip() == "240"
    assert d.restore("owner_looking_away")
    assert level.read_text().strip() == "800"
    assert brightness_calls(record)[-1] == ["backlight", "intel_backlight", 800]
    assert not d.state_file.exists()
    assert not d.restore()  # nothing dimmed: nothing to do
    assert len(brightness_calls(record)) == 2


def test_a_brightness_the_user_set_while_dimmed_stays_theirs(panel, tmp_path):
    level, record, sysfs, _ = panel
    d = dimmer(sysfs, tmp_path)
    d.dim("owner_looking_away")
    level.write_text("500\n")  # the user pressed the brightness key
    assert d.restore("owner_looking_away")
    assert level.read_text().strip() == "500"
    assert brightness_calls(record) == [["backlight", "intel_backlight", 240]]


def test_a_dim_left_by_a_crash_is_restored_by_the_next_dimmer(panel, tmp_path):
    level, _, sysfs, _ = panel
    dimmer(sysfs, tmp_path).dim("owner_leaving")
    # A daemon starting later, configured otherwise, finds the file and restores through logind.
    later = dimmer(sysfs, tmp_path, methods=["xrandr"])
    assert later.state()["reasons"] == ["owner_leaving"]
    assert later.restore()
    assert level.read_text().strip() == "800"


def test_a_state_file_that_is_a_link_is_refused(panel, tmp_path):
    _, _, sysfs, _ = panel
    d = dimmer(sysfs, tmp_path)
    d.state_file.parent.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"method": "logind", "reasons": ["x"], "targets": {}}))
    d.state_file.symlink_to(elsewhere)
    assert d.state() is None
    d.state_file.unlink()
    d.state_file.write_text(json.dumps({"method": "logind", "reasons": ["x"], "targets": {"a": "b"}}))
    assert d.state() is None and not d.restore()  # not what facewarden writes: ignored, never a crash


def test_doctor_reasons_without_logind_gnome_or_x(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'none'}")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("DISPLAY", raising=False)
    chain = backends(DimConfig(sysfs=tmp_path / "sys"))
    assert [b.available() for b in chain] == [None] * 4
    problems = {b.name: b.problem for b in chain}
    assert problems["logind"] == f"no backlight device in {tmp_path / 'sys' / 'backlight'}"
    assert problems["gnome"].startswith("no org.gnome.SettingsDaemon.Power")
    assert problems["xrandr"] in ("no X display (DISPLAY is unset)", "xrandr is not installed")
    backlight(tmp_path / "sys")
    logind_backend = backends(DimConfig(sysfs=tmp_path / "sys", methods=["logind"]))[0]
    assert logind_backend.available() is None
    assert logind_backend.problem == "logind knows no session of ours to set the brightness through"


def test_gnome_dims_where_no_backlight_is_logind_s(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'none'}")
    record = tmp_path / "desktop.jsonl"
    monkeypatch.setenv("FACEWARDEN_TEST_RECORD", str(record))
    with session_bus(tmp_path) as address, desktop(address, GNOME_POWER):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        d = dimmer(tmp_path / "sys", tmp_path)
        assert backends(DimConfig(methods=["gnome"]))[0].available() == f"gnome ({GNOME_POWER})"
        assert d.dim("owner_leaving")
        assert d.state()["method"] == "gnome"
        assert brightness_calls(record) == [[24]]  # 30% of the desktop's 80%
        drive(address, GNOME_POWER, "SetBrightness", "i", 60)  # the user moved it meanwhile
        d.restore()
        assert brightness_calls(record) == [[24]]
        d.dim("owner_leaving")
        d.restore()
        assert brightness_calls(record) == [[24], [18], [60]]


def test_xrandr_says_why_it_cannot_dim_xvfb(monkeypatch):
    need("xrandr", "x11-xserver-utils")
    with xvfb() as display:
        monkeypatch.setenv("DISPLAY", display)
        x = XrandrGamma()
        # Xvfb's outputs have no gamma ramp: xrandr reports brightness 0 and cannot change it.
        assert x.available() is None
        assert x.problem == "no connected X output has a gamma ramp"


# -- the surroundings ---------------------------------------------------------------------------

def connectors(sysfs: Path, **status: str) -> None:
    """DRM connectors in a sysfs-like directory, as the kernel lists them: card0-eDP-1 ... status."""
    for name, value in status.items():
        (sysfs / "drm" / name.replace("_", "-")).mkdir(parents=True, exist_ok=True)
        (sysfs / "drm" / name.replace("_", "-") / "status").write_text(value + "\n")


def calls(record: Path, member: str) -> int:
    return sum(r["what"] == "call" and r["member"] == member for r in map(json.loads, record.read_text().splitlines()))


@pytest.mark.parametrize("desk", ["org.gnome.SessionManager", "org.freedesktop.PowerManagement.Inhibit"])
def test_surroundings_follow_inhibitors_and_battery_as_the_desktop_announces_them(panel, tmp_path, monkeypatch, desk):
    """Nothing is asked while nothing changes (a poller would ask every REFRESH_S, here 10 ms): each
    answer is read once at the start and again at each announcement of a change."""
    _, record, sysfs, system = panel
    monkeypatch.setattr(surroundings, "REFRESH_S", 0.01)
    connectors(sysfs, card0_eDP_1="connected")
    with session_bus(tmp_path) as session, desktop(session, desk):
        around = Surroundings(sysfs)
        system_bus_ = Bus.open(system, "system", enable_fds=True)
        session_bus_ = Bus.open(session, "session")
        try:
            around.start(system_bus_, session_bus_)
            assert (around.inhibited, around.on_battery, around.monitors) == (False, False, 1)
            # A video player takes logind's idle inhibitor, and lets go of it.
            with open_dbus_connection(system, enable_fds=True) as conn:
                manager = DBusAddress("/org/freedesktop/login1", bus_name="org.freedesktop.login1",
                                      interface="org.freedesktop.login1.Manager")
                fd = conn.send_and_get_reply(
                    new_method_call(manager, "Inhibit", "ssss", ("idle", "mpv", "playing", "block"))).body[0]
                wait_for(lambda: around.inhibited, "logind's inhibitor seen")
                os.close(fd.to_raw_fd())
            wait_for(lambda: not around.inhibited, "logind's inhibitor gone")
            # The desktop has one (an application's ScreenSaver Inhibit), and the laptop is unplugged.
            drive(session, desk, "SetInhibited", "u", 8)
            wait_for(lambda: around.inhibited, "the desktop's inhibitor seen")
            drive_logind(system, "SetBattery", "b", True)
            wait_for(lambda: around.on_battery, "on battery")
            drive(session, desk, "SetInhibited", "u", 0)
            wait_for(lambda: not around.inhibited, "the desktop's inhibitor gone")
            # Once at the start, then once for each change logind announced (the inhibitor's start and end).
            assert calls(record, "ListInhibitors") == 3
            assert calls(record, "Get") == 2  # OnBattery: at the start, and after the change
        finally:
            around.close()
            system_bus_.close()
            session_bus_.close()


def test_surroundings_asks_a_desktop_service_that_starts_after_it(panel, tmp_path):
    """A session manager that (re)starts later is asked at once: its inhibitor counts."""
    _, _, sysfs, _ = panel
    with session_bus(tmp_path) as session:
        around = Surroundings(sysfs)
        session_bus_ = Bus.open(session, "session")
        try:
            around.start(None, session_bus_)
            assert not around.inhibited
            with desktop(session, "org.gnome.SessionManager"):
                drive(session, "org.gnome.SessionManager", "SetInhibited", "u", 8)
                wait_for(lambda: around.inhibited, "the inhibitor of a session manager started later")
            wait_for(lambda: not around.inhibited, "the inhibitor of a session manager that stopped")
        finally:
            around.close()
            session_bus_.close()


@contextmanager
def laptop(tmp_path: Path) -> Iterator[tuple[Surroundings, Path]]:
    """Surroundings started without buses on a laptop's sysfs (its panel connected, HDMI not): itself
    and the sysfs, where a test plugs in a monitor."""
    sysfs = tmp_path / "sys"
    connectors(sysfs, card0_eDP_1="connected", card0_HDMI_A_1="disconnected")
    around = Surroundings(sysfs)
    around.start(None, None)
    try:
        assert around.monitors == 1
        yield around, sysfs
    finally:
        around.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a uevent is made by writing a device's uevent file, which needs root")
def test_monitors_are_counted_again_at_the_kernels_uevents(tmp_path, monkeypatch):
    """A real kernel uevent (of /dev/null's device, written to its uevent file, in the part of a
    DRM connector's) makes the connectors be counted again; no timer does."""
    if surroundings.kernel_uevents() is None:
        pytest.skip("no netlink socket for the kernel's uevents here")
    monkeypatch.setattr(surroundings, "SUBSYSTEM", b"mem")
    monkeypatch.setattr(surroundings, "REFRESH_S", 0.01)
    with laptop(tmp_path) as (around, sysfs):
        connectors(sysfs, card0_HDMI_A_1="connected")
        with pytest.raises(AssertionError):  # nothing reads sysfs without a uevent
            wait_for(lambda: around.monitors == 2, "a count without a uevent", timeout=0.3)
        Path("/sys/class/mem/null/uevent").write_text("change")
        wait_for(lambda: around.monitors == 2, "the monitor plugged in counted")


def test_monitors_are_read_every_few_seconds_without_uevents(tmp_path, monkeypatch):
    monkeypatch.setattr(surroundings, "kernel_uevents", lambda: None)
    monkeypatch.setattr(surroundings, "REFRESH_S", 0.01)
    with laptop(tmp_path) as (around, sysfs):
        connectors(sysfs, card0_HDMI_A_1="connected")
        wait_for(lambda: around.monitors == 2, "the monitor plugged in counted")


def test_doctor_names_the_dimming_back_end_that_works_and_why_the_others_do_not(panel):
    from facewarden.config import parse
    from facewarden.desktop import doctor

    _, _, sysfs, system = panel
    cfg = parse({"dim": {"sysfs": str(sysfs)}})
    check = doctor.check_dim(cfg)
    assert check.ok
    assert check.text.startswith("logind (intel_backlight of /org/freedesktop/login1/session/c1); not: ")
    assert "gnome: no org.gnome.SettingsDaemon.Power" in check.text and "xrandr: " in check.text
    assert doctor.check_power(cfg, None).text.startswith("on mains power")
    drive_logind(system, "SetBattery", "b", True)
    assert doctor.check_power(cfg, None).text == "on battery: sampling intervals x2 (sampling.battery_factor)"
    assert not doctor.check_dim(parse({"dim": {"sysfs": str(sysfs), "methods": ["kde"]}})).ok


def test_status_says_on_battery_and_what_facewarden_dimmed():
    from facewarden.cli.daemon_commands import format_status

    status = {"state": "owner_present", "since": 0, "locked": False, "camera": "ok", "faces": 1, "score": 0.7,
              "on_battery": True, "interval_factor": 2.0, "dimmed": ["owner_leaving"]}
    lines = format_status(status).splitlines()
    assert "power:   on battery: sampling intervals x2" in lines
    assert "dimmed:  by facewarden (owner_leaving)" in lines
    plain = format_status({**status, "on_battery": False, "dimmed": []})
    assert "power" not in plain and "dimmed" not in plain
