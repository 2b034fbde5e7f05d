"""Screen lockers as a lock-state source (service/lockers.py), with real processes: a locker
program (a copy of the Python interpreter named `fakelock`, so that it can fork to the background
as `swaylock -f` does) started, forked and ended; the real swaylock against sway is in
test_wayland.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from desktop_helpers.procs import wait_for
from facewarden.service.lockers import Lockers, programs


@pytest.fixture
def locker(tmp_path):
    """An installed "locker": the interpreter copied as tmp/fakelock (its own inode: only its execs are seen)."""
    path = tmp_path / "fakelock"
    path.write_bytes(open(os.path.realpath(sys.executable), "rb").read())
    path.chmod(0o755)
    return path


def sleeping(locker, seconds: float = 60, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(locker), "-c", f"import time; time.sleep({seconds})"], **kw)


@pytest.fixture
def watching(locker):
    changes: list[bool] = []
    source = Lockers([str(locker)])
    assert source.start(changes.append)
    try:
        yield source, changes
    finally:
        source.close()


def test_only_installed_lockers_are_watched(locker, tmp_path):
    assert programs([str(locker), str(tmp_path / "absent"), "no-such-locker-anywhere"]) == {
        str(locker): "fakelock"}
    assert "fakelock" in Lockers([str(locker)]).available()
    assert Lockers([str(locker)]).locked() is None  # not started: cannot tell


def test_a_locker_locks_from_its_start_to_its_exit(watching, locker):
    source, changes = watching
    assert source.locked() is False and changes == []
    proc = sleeping(locker)
    try:
        wait_for(lambda: source.locked(), "the locker to be seen")
        wait_for(lambda: changes == [True], "the start reported")  # reported right after the state changes
        assert source.which() == "fakelock"
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: source.locked() is False, "the locker's exit to be seen")
    wait_for(lambda: changes == [True, False], "the exit reported")  # reported right after the state changes


def test_a_locker_that_forks_to_the_background_stays_locked(watching, locker):
    # As `swaylock -f`: the process that was exec'd forks (no exec) and ends; its child keeps the lock.
    source, changes = watching
    forker = subprocess.Popen([str(locker), "-c", "import os, time\nif os.fork() == 0:\n    time.sleep(60)"])
    forker.wait()
    wait_for(lambda: source.locked() and forker.pid not in source.running, "the forked locker")
    (child,) = source.running
    time.sleep(0.3)
    assert changes == [True]  # the parent's end did not read as an unlock
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: source.locked() is False, "the forked locker's exit")
    wait_for(lambda: changes == [True, False], "the exit reported")


def test_another_users_locker_is_not_ours(tmp_path):
    if os.getuid() != 0:
        pytest.skip("starting a process as another user needs root")
    # `sleep` as the locker, in a directory the other user can reach (pytest's tmp_path is root's only).
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        locker = folder / "fakelock"
        shutil.copy2(shutil.which("sleep"), locker)
        source = Lockers([str(locker)])
        assert source.start(lambda locked: None)
        proc = subprocess.Popen([str(locker), "60"], user=65534, group=65534, extra_groups=[])
        try:
            wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "fakelock", "the exec")
            time.sleep(0.7)  # longer than the settle delays after the exec is reported
            assert source.locked() is False
        finally:
            proc.kill()
            proc.wait()
            source.close()
    finally:
        shutil.rmtree(folder)


def test_a_locker_already_running_at_start_counts(locker):
    proc = sleeping(locker)
    try:
        wait_for(lambda: open(f"/proc/{proc.pid}/comm").read().strip() == "fakelock", "the exec")
        source = Lockers([str(locker)])
        assert source.start(lambda locked: None)
        try:
            assert source.locked() is True
        finally:
            source.close()
    finally:
        proc.kill()
        proc.wait()
