"""A wheel built from the repo works without the source tree: it carries the systemd units, the demo's
hooks and the default config, and a facewarden installed from it (not from the checkout) installs its
units into a fresh HOME and runs `facewarden demo` (what `make demo` runs) to the end."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = ["facewarden/data/config.toml", "facewarden/data/systemd/facewarden.service",
        "facewarden/data/systemd/facewarden-tray.service", "facewarden/data/hooks/demo-lock",
        "facewarden/data/hooks/print-event", "facewarden/data/liveness_texture.npy"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built and installed into a directory of its own (dependencies: the test venv's)."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(out.glob("facewarden-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert set(DATA) <= set(names), sorted(n for n in names if "/data/" in n)
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def env_for(target: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "FACEWARDEN_HOME"}
    return env | {"PYTHONPATH": str(target), "HOME": str(home), "PATH": f"{target / 'bin'}:{env['PATH']}"}


def test_the_installed_wheel_is_what_runs(installed, tmp_path):
    code = "import facewarden; print(facewarden.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env_for(installed, tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).is_relative_to(installed), out.stdout


def test_install_from_the_wheel_writes_units_and_config(installed, tmp_path):
    exe = installed / "bin" / "facewarden"
    r = subprocess.run([str(exe), "install"], env=env_for(installed, tmp_path), cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = (tmp_path / ".config/systemd/user/facewarden.service").read_text()
    assert f"ExecStart={exe} run" in unit
    shipped = (installed / "facewarden/data/config.toml").read_text()
    assert (tmp_path / ".config/facewarden/config.toml").read_text() == shipped


def test_the_demo_runs_from_the_wheel(installed, tmp_path):
    """`make demo`: no webcam, no ../shared, no source tree; the real daemon, a printing lock, events as
    they happen."""
    r = subprocess.run([str(installed / "bin" / "facewarden"), "demo"], env=env_for(installed, tmp_path),
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    assert "liveness is OFF for this demo" in out
    # The lock action runs before the event's hooks, so the printed lock comes first.
    order = ["[hook]", "owner_arrived", "LOCK: a real install would lock", "owner_left", "locked", "owner_arrived",
             "replay over"]
    position = 0
    for needle in order:
        found = out.find(needle, position)
        assert found >= 0, f"{needle!r} missing after position {position}:\n{out}"
        position = found + len(needle)
    home = out.split("FACEWARDEN_HOME=")[1].split()[0]
    assert not Path(home).exists()  # the demo cleans up after itself
