"""The service: the sampling step over a replayed camera with the real verifier, the daemon's control
handlers and reload, and the real `facewarden run` process (signals, socket, no TensorFlow, exit codes).

The owner is scikit-image's astronaut, enrolled and trained once per session with the real commands,
so these tests run without ../shared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support import PYTHON, Clock, wait_for
from facewarden import config as config_module
from facewarden.service.camera import ReplayEnded
from facewarden.config import parse
from facewarden.service.control import request
from facewarden.cli.demo import write_replay
from facewarden.errors import UserError
from facewarden.events import Event
from facewarden.paths import paths
from facewarden.core.guard import Pause
from facewarden.core.presence import State
from facewarden.service.daemon import Daemon
from facewarden.service.pacer import Pacer

WAIT_S = 60.0  # generous: CI has 2 shared cores


@pytest.fixture(scope="session")
def replay(tmp_path_factory, astronaut_bgr) -> Path:
    """Owner 2 s, nobody 4 s, a broken camera 1.6 s, owner 2 s, at 5 fps."""
    folder = tmp_path_factory.mktemp("replay")
    write_replay(folder, [("owner", 2, [[astronaut_bgr]]), ("empty", 4, [[]]), ("broken", 1.6, [None]),
                          ("back", 2, [[astronaut_bgr]])])
    return folder


def write_config(home: Path, text: str) -> config_module.Config:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return config_module.load(home / "config.toml")


def sampling(cfg, clock: Clock) -> Daemon:
    """A daemon that is built but not run: the tests call its one per-sample step, `sampler.take`."""
    return Daemon(cfg, paths(), clock=clock)


def test_sampling_step_over_a_replayed_camera(owner_home, replay):
    cfg = parse({"camera": {"source": str(replay), "retry_max_s": 0.5}, "lock": {"after_absent_s": 2},
                 "liveness": {"enabled": False}, "actions": {"owner_left": []}})
    clock = Clock()
    daemon = sampling(cfg, clock)
    seen, intervals = [], set()
    with pytest.raises(ReplayEnded):
        for _ in range(200):
            seen += [(round(clock.t - 1000, 2), e) for e in daemon.sampler.take()]
            intervals.add(daemon.guard.interval())
            clock.t += daemon.guard.interval()
    assert [e for _, e in seen] == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT, Event.CAMERA_LOST,
                                    Event.CAMERA_RESTORED, Event.OWNER_ARRIVED]
    times = dict((e, t) for t, e in reversed(seen))
    assert times[Event.OWNER_LEFT] <= 2.0 + 2.0 + 0.5  # last owner frame + after_absent_s + an interval
    assert 6.0 <= times[Event.CAMERA_LOST] <= 7.0  # the broken frames start at 6 s; sampled each second
    assert intervals == {0.25, 1.0}  # the cadence followed the state


def test_a_snapshot_keeps_its_own_frame_while_the_camera_reads_the_next_into_the_same_buffer(
        owner_home, replay, astronaut_bgr):
    import cv2

    cfg = parse({"camera": {"source": str(replay)}, "liveness": {"enabled": False},
                 "snapshot": {"enabled": True}, "actions": {"stranger_detected": ["snapshot"]}})
    daemon = sampling(cfg, Clock())
    busy = threading.Event()
    daemon.fanout._actions.submit(busy.wait)  # the actions thread still busy with an earlier event
    frame = astronaut_bgr.copy()
    daemon.fanout.dispatch([Event.STRANGER_DETECTED], frame)
    frame[:] = 0  # the next sample's read, into the buffer this frame came in
    busy.set()
    assert daemon.fanout._actions.drain(WAIT_S)
    (snapshot,) = paths().snapshots_dir.iterdir()
    assert abs(float(cv2.imread(str(snapshot)).mean()) - float(astronaut_bgr.mean())) < 2


def test_real_liveness_refuses_the_photo_of_the_owner(owner_home, astronaut_bgr, tmp_path):
    frames = tmp_path / "photo"
    write_replay(frames, [("photo held up", 12, [[astronaut_bgr]])])
    cfg = parse({"camera": {"source": str(frames)}, "liveness": {"enabled": True, "window_s": 5},
                 "actions": {"spoof_suspected": []}})
    clock = Clock()
    daemon = sampling(cfg, clock)
    events = []
    while clock.t < 1008:
        events += daemon.sampler.take()
        clock.t += daemon.guard.interval()
    # Verified as the owner's face, but never alive: held for liveness.window_s, then a spoof.
    assert events == [Event.SPOOF_SUSPECTED]
    assert daemon.guard.presence.state == State.STRANGER


def test_paused_step_does_not_read_the_camera(owner_home, replay):
    cfg = parse({"camera": {"source": str(replay)}, "liveness": {"enabled": False}})
    clock = Clock()
    daemon = sampling(cfg, clock)
    verify = daemon.sampler.observer.verify
    daemon.sampler.observer.verify = lambda frame: pytest.fail("judged a frame while paused")
    daemon.feed(Pause(clock() + 10))
    clock.t += 5
    assert daemon.sampler.take() == [] and daemon.sampler.camera.cameras[0]._started is None
    assert daemon.sampler.released.is_set()
    daemon.sampler.observer.verify = verify
    clock.t += 5
    assert daemon.sampler.take() == [Event.RESUMED]


def test_daemon_control_and_reload(owner_home, replay, tmp_path):
    marker = tmp_path / "locked"
    lock = tmp_path / "lock.sh"
    lock.write_text(f'#!/bin/sh\necho locked > "{marker}"\n')
    lock.chmod(0o755)
    base = f'[camera]\nsource = "{replay}"\n[liveness]\nenabled = false\n[lock]\ncommand = ["{lock}"]\nmethods = ["command"]\n'
    cfg = write_config(owner_home, base)
    daemon = Daemon(cfg, paths())
    api = daemon.server.controller
    status = api.status()
    assert set(status) == {"state", "since", "paused_until", "locked", "locked_by", "lock_confirmed", "camera",
                           "camera_busy_by", "camera_in_use", "faces", "score", "person", "model", "session_locked",
                           "locked_via", "logind", "sampling", "samples", "sampled_at", "idle_s", "idle_source",
                           "liveness", "on_battery", "interval_factor", "warning", "dimmed"}
    assert status["state"] == "pending" and status["camera"] == "ok" and status["liveness"] == "off"

    paused = api.pause(60)
    assert paused["ok"] and paused["state"] == "paused" and paused["paused_until"] > time.time() + 50
    assert paused["camera"] == "released (paused)"
    assert api.resume()["state"] == "pending"

    # No lock-state source here (no logind, no screensaver): the lock is facewarden's, unconfirmed.
    locked = api.lock_now()
    assert locked["locked"] is True and marker.read_text() == "locked\n"
    assert (locked["locked_by"], locked["lock_confirmed"], locked["locked_via"]) == ("facewarden", False, "facewarden")

    (owner_home / "config.toml").write_text(base + "after_absent_s = -3\n")
    refused = api.reload()
    assert refused["ok"] is False and "lock.after_absent_s" in refused["error"] and "old config stays" in refused["error"]
    assert daemon.guard.presence.after_absent_s == 10.0
    (owner_home / "config.toml").write_text(base.replace('source = "', 'source = "/nonexistent'))
    assert api.reload()["ok"] is False and daemon.config == cfg
    (owner_home / "config.toml").write_text(base + "after_absent_s = 4\n")
    assert api.reload()["ok"] is True and daemon.guard.presence.after_absent_s == 4.0
    # What the verifier was built with is built again when it changes, not only the model's section.
    tracker = daemon.sampler.observer.verify.__self__.tracker  # type: ignore[attr-defined]
    assert (tracker.reverify_s, tracker.full_scan_s) == (5.0, 2.0)
    (owner_home / "config.toml").write_text(base + "after_absent_s = 4\n[sampling]\nreverify_s = 3\nfull_scan_s = 1\n")
    assert api.reload()["ok"] is True
    tracker = daemon.sampler.observer.verify.__self__.tracker  # type: ignore[attr-defined]
    assert (tracker.reverify_s, tracker.full_scan_s) == (3.0, 1.0)

    daemon.fanout.shutdown()
    events = [json.loads(line)["event"] for line in paths().events_file.read_text().splitlines()]
    assert events == ["paused", "resumed", "locked"]


def test_a_slow_sample_never_meets_the_next(owner_home, replay):
    """A sample that ends moves the next one to an interval after its end, whenever it was due, so
    a slow camera never has two reads at once. The sampling thread is not started: nothing runs but
    the one sample called here."""
    cfg = parse({"camera": {"source": str(replay)}, "sampling": {"interval_s": 0.3, "doubt_interval_s": 0.3},
                 "liveness": {"enabled": False}})
    daemon = Daemon(cfg, paths())
    ended: list[float] = []
    daemon.sampler.take = lambda: ended.append(time.monotonic()) or []  # type: ignore[method-assign]
    daemon.pacer = Pacer(daemon._sample, 0.3)  # due at once, as `run` starts it
    try:
        daemon._sample()
        assert daemon.pacer.due >= ended[0] + 0.3
    finally:
        daemon.fanout.shutdown()


def test_the_sampling_thread_runs_when_due_and_when_kicked():
    """The pacer's thread samples at once, then not before the interval, unless told to now; one
    started afresh takes over while the old one still hangs in its run."""
    runs: list[str] = []
    ran, hang, hung = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        runs.append(threading.current_thread().name)
        ran.set()
        if len(runs) == 2:  # the second run hangs, as a wedged camera read
            hung.set()
            hang.wait(10)

    pacer = Pacer(job, 3600.0)
    pacer.start()
    try:
        assert ran.wait(5) and runs == ["sampling"]  # at once
        ran.clear()
        assert pacer.due - time.monotonic() > 3000 and runs == ["sampling"]  # then an hour away
        pacer.pace(3600.0, now=True)
        assert hung.wait(5) and len(runs) == 2
        ran.clear()
        pacer.start()  # the watchdog's fresh thread
        assert ran.wait(5) and len(runs) == 3
    finally:
        pacer.stop()
        hang.set()


def test_a_sample_handed_over_as_the_daemon_stops_does_not_hold_up_its_exit(owner_home, replay):
    """Shutdown keeps the sampling lock once the last sample is done. A sample the scheduler had
    already handed to its pool returns at once instead of waiting for it: the pool's threads are
    joined at exit, so a waiting one would hang the stop until systemd kills it."""
    daemon = Daemon(parse({"camera": {"source": str(replay)}, "liveness": {"enabled": False}}), paths())
    assert daemon._running.acquire(timeout=1)  # as _shutdown does
    late = threading.Thread(target=daemon._sample, daemon=True)
    late.start()
    late.join(5)
    try:
        assert not late.is_alive(), "the late sample waits for the lock shutdown keeps"
        assert daemon.sampler.samples == 0  # and it took no sample
    finally:
        daemon._running.release()
        daemon.fanout.shutdown()


def test_the_daemon_follows_the_owners_track_only_when_adapt_is_on(owner_home, replay):
    base = f'[camera]\nsource = "{replay}"\n[liveness]\nenabled = false\n'
    for enabled in (False, True):
        daemon = Daemon(write_config(owner_home, base + f"[adapt]\nenabled = {str(enabled).lower()}\n"), paths())
        tracked = []
        with pytest.raises(ReplayEnded):
            while True:
                daemon.sampler.take()
                tracked.append(daemon.sampler.track.person)
        # On: the owner's track while he sits there, ended by the empty desk and the broken camera.
        assert ("owner" in tracked and None in tracked[tracked.index("owner"):]) is enabled
        assert set(tracked) == ({None, "owner"} if enabled else {None})


def start_daemon(home: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    proc = subprocess.Popen(PYTHON + ["run"], env=env, stderr=open(log, "w"), stdout=subprocess.DEVNULL)

    def up() -> bool:
        assert proc.poll() is None, f"the daemon exited ({proc.poll()}):\n{log.read_text()[-3000:]}"
        try:
            return bool(request({"cmd": "status"}, home / "run" / "control.sock"))
        except UserError:
            return False

    wait_for(up, "the daemon's control socket", WAIT_S)
    return proc


def test_daemon_process_signals_socket_and_no_tensorflow(owner_home, replay, tmp_path, astronaut_bgr):
    frames = tmp_path / "loop"
    write_replay(frames, [("owner", 2, [[astronaut_bgr]])])
    hooks = owner_home / "hooks"
    hooks.mkdir()
    pid_file = tmp_path / "hook.pid"
    (hooks / "owner_arrived").write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nsleep 300\n')
    (hooks / "owner_arrived").chmod(0o755)
    good = (f'[camera]\nsource = "{frames}"\nreplay_loop = true\n[liveness]\nenabled = false\n'
            '[hooks]\ntimeout_s = 3\n[actions]\ncamera_lost = []\n')
    write_config(owner_home, good)
    log = tmp_path / "daemon.log"
    proc = start_daemon(owner_home, log)
    sock = owner_home / "run" / "control.sock"
    try:
        wait_for(lambda: request({"cmd": "status"}, sock)["state"] == "owner_present", "the owner")
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "tensorflow" not in maps, "the daemon process loaded TensorFlow"

        (owner_home / "config.toml").write_text(good + "[presence]\nwindow = 2\nrequired = 3\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log.read_text(), "the refused reload in the log")
        assert "required must not exceed window" in log.read_text()
        assert request({"cmd": "status"}, sock)["state"] == "owner_present"
        assert request({"cmd": "reload"}, sock)["ok"] is False

        wait_for(pid_file.exists, "the hanging hook")
        hook_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
        # The hanging hook was drained with its deadline (hooks.timeout_s), then killed.
        assert not Path(f"/proc/{hook_pid}").exists() or "Z" in Path(f"/proc/{hook_pid}/stat").read_text().split()[2]
        assert not sock.exists()
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_end_of_replay_exits_0(owner_home, replay, tmp_path):
    write_config(owner_home, f'[camera]\nsource = "{replay}"\n[liveness]\nenabled = false\n'
                             '[lock]\nmethods = []\n[actions]\ncamera_lost = []\nowner_left = []\n')
    env = {**os.environ, "FACEWARDEN_HOME": str(owner_home)}
    result = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ended" in result.stderr


@pytest.mark.parametrize("text,message", [
    ('[lock]\nafter_absent_s = "soon"\n[camera]\nreplay_fps = 0\n', ["lock.after_absent_s", "camera.replay_fps"]),
    ("[camera\n", ["not valid TOML"]),
    ('[camera]\nsource = "/no/such/video.mp4"\n', ["camera.source", "/no/such/video.mp4"]),
])
def test_bad_config_at_start_is_one_clear_error(owner_home, text, message):
    (owner_home / "config.toml").write_text(text)
    env = {**os.environ, "FACEWARDEN_HOME": str(owner_home)}
    result = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("facewarden: ") and "Traceback" not in result.stderr
    for m in message:
        assert m in result.stderr


def test_no_owner_model_is_a_clear_error(home, replay):
    write_config(home, f'[camera]\nsource = "{replay}"\n')
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    result = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_unlock_enabled_warns_at_every_start(owner_home, replay, caplog):
    cfg = write_config(owner_home, f'[camera]\nsource = "{replay}"\n[actions]\nowner_arrived = ["unlock"]\n')
    with caplog.at_level("WARNING", logger="facewarden"):
        daemon = Daemon(cfg, paths())
        assert "the unlock action is enabled" in caplog.text
        caplog.clear()
        assert daemon.server.controller.reload()["ok"] is True
        assert "the unlock action is enabled" in caplog.text


def test_the_readmes_example_config_locks_when_the_owner_leaves(owner_home, astronaut_bgr, tmp_path):
    from test_config import readme_example

    frames = tmp_path / "leaves"
    write_replay(frames, [("owner", 2, [[astronaut_bgr]]), ("empty", 30, [[]])])
    marker = tmp_path / "locked"
    lock = tmp_path / "lock.sh"
    lock.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\n')
    lock.chmod(0o755)
    example = readme_example()
    example["lock"]["command"] = [str(lock), "-f"]  # the README's swaylock, recorded instead
    cfg = parse({**example, "camera": {"source": str(frames)}, "liveness": {"enabled": False}})
    clock = Clock()
    daemon = sampling(cfg, clock)
    events = []
    with pytest.raises(ReplayEnded):
        while True:
            events += daemon.sampler.take()
            clock.t += daemon.guard.interval()
    assert events[0] == Event.OWNER_ARRIVED and Event.OWNER_LEFT in events  # dimmed first, softer answers
    daemon.fanout.shutdown()
    assert marker.read_text() == "-f\n"
    assert daemon.guard.locked and daemon.guard.locked_by == "facewarden"


def test_the_main_thread_waits_for_the_watchdog_until_due_and_past_it_does_not_poll():
    """The daemon's main thread sleeps until the watchdog is due (at most WATCH_MAX_S); once past due
    the watchdog has acted, and the thread sleeps on instead of looking again and again until a
    sample completes (a read that stays hung)."""
    import math

    from facewarden.service.sampler import Watchdog

    dog = Watchdog()
    dog.due = time.monotonic() + 3.0
    assert 2.0 < dog.until_due() <= 3.0
    dog.due = time.monotonic() - 1.0
    assert dog.until_due() == math.inf
    dog.fed()
    assert 0.0 < dog.until_due() <= dog.deadline
