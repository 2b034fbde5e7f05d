"""The guard, the one holder of the session's state, over typed inputs and a hand-set clock: lock-state
sources that report and vanish, facewarden's own lock confirmed or not, sleep, a hung camera."""

from __future__ import annotations

from facewarden.config import parse
from facewarden.core.guard import (OWN_LOCK_S, CameraHung, LockDone, LockStarted, Pause, Reported, Resume, Sleep,
                                   Wake)
from facewarden.core.presence import Sample, State
from facewarden.events import Event
from support import Run

OWNER = Sample(owner=True, live=True, score=0.8)
EMPTY = Sample()


def present(**kwargs) -> Run:
    run = Run(parse({"lock": {"after_absent_s": 10}}), **kwargs)
    assert run.feed(OWNER, 2) == [Event.OWNER_ARRIVED]
    return run


def test_a_source_that_vanishes_while_locked_no_longer_holds_the_session():
    run = present()
    assert run.step(Reported("org.mate.ScreenSaver", True)) == [Event.LOCKED]
    assert run.guard.locked_by == "session" and not run.guard.wants_camera
    assert run.guard.camera == "released (locked)" and run.guard.sampling_word == "off (locked)"
    epoch = run.guard.epoch
    # The screensaver crashed: its word goes with it, and sampling starts afresh.
    assert run.step(Reported("org.mate.ScreenSaver", None)) == [Event.UNLOCKED]
    assert not run.guard.locked and run.guard.wants_camera and run.guard.epoch > epoch
    assert run.machine.state == State.PENDING
    # Started again, inactive: nothing changes; a vanished source is not asked for again.
    assert run.step(Reported("org.mate.ScreenSaver", False)) == []
    # Nobody is there: the absence timer ran from the vanishing, and the lock comes (warned first).
    assert run.feed(EMPTY, 10.25) == [Event.OWNER_LEAVING, Event.OWNER_LEFT]


def test_one_locked_source_is_enough_and_each_speaks_for_itself():
    run = present()
    run.step(Reported("logind", False))
    assert run.step(Reported("org.freedesktop.ScreenSaver", True)) == [Event.LOCKED]
    assert run.guard.locked_via == "org.freedesktop.ScreenSaver"
    assert run.step(Reported("logind", True)) == []
    assert run.step(Reported("org.freedesktop.ScreenSaver", False)) == []  # logind still says locked
    assert run.step(Reported("logind", False)) == [Event.UNLOCKED]


def test_a_lock_soon_after_facewardens_own_is_facewardens():
    run = present()
    run.step(LockStarted())
    run.now += 1.0
    assert run.step(Reported("logind", True)) == [Event.LOCKED]
    assert run.guard.locked_by == "facewarden"
    assert run.step(LockDone("loginctl", confirmed=True)) == []  # confirmed: locked fired once
    run.step(Reported("logind", False))
    run.step(LockStarted())
    run.step(LockDone(None))  # nothing locked
    run.now += OWN_LOCK_S + 1
    assert run.step(Reported("logind", True)) == [Event.LOCKED]
    assert run.guard.locked_by == "session"


def test_an_unconfirmed_lock_keeps_watching_and_ends_when_input_resumes():
    run = present()
    run.feed(EMPTY, 10.25)
    run.step(LockStarted())
    assert run.step(LockDone("xdg-screensaver")) == [Event.LOCKED]
    assert run.guard.locked and not run.guard.session_locked and run.guard.locked_via == "facewarden"
    assert run.guard.wants_camera and run.guard.wants_idle  # nothing says the screen is covered
    locked_at = run.now
    # Idle since before the lock: still locked.
    assert run.feed(lambda t: Sample(idle_s=run.now - locked_at + 30), 5) == []
    # Input after the lock (the owner typed their password): unlocked, from fresh evidence.
    assert run.feed(Sample(idle_s=0.5), 0.25) == [Event.UNLOCKED]
    assert not run.guard.locked and run.machine.state == State.PENDING


def test_a_confirmed_lock_does_not_end_on_input():
    run = present(watch_while_locked=True)
    run.step(Reported("logind", True))
    assert run.guard.wants_camera and not run.guard.wants_idle
    assert run.guard.interval() == run.guard.sampling.locked_interval_s
    run.feed(Sample(idle_s=0.1), 2)
    assert run.guard.locked


def test_sleep_releases_the_camera_and_wake_starts_afresh():
    run = present()
    assert run.step(Sleep()) == [Event.SLEEP]
    assert not run.guard.wants_camera and run.guard.camera == "released (asleep)"
    assert run.guard.sampling_word == "off (asleep)"
    run.now += 3600
    assert run.step(Wake()) == [Event.WAKE]
    assert run.guard.wants_camera and run.machine.state == State.PENDING
    assert run.feed(OWNER, 1) == [Event.OWNER_ARRIVED]


def test_a_hung_camera_is_lost_once_and_restored_by_the_next_sample():
    run = present()
    epoch = run.guard.epoch
    assert run.step(CameraHung()) == [Event.CAMERA_LOST]
    assert run.step(CameraHung()) == []
    assert run.guard.epoch > epoch and run.guard.camera == "lost"
    assert run.feed(OWNER, 0.25) == [Event.CAMERA_RESTORED]


def test_pause_releases_the_camera_and_paces_slowly():
    run = present()
    assert run.step(Pause(None)) == [Event.PAUSED]
    assert run.guard.camera == "released (paused)" and run.guard.interval() == run.guard.sampling.paused_interval_s
    assert run.step(Resume()) == [Event.RESUMED]
    assert run.guard.camera == "ok" and run.guard.interval() == run.guard.sampling.doubt_interval_s


def test_on_battery_every_interval_stretches_by_the_battery_factor():
    run = present()
    normal = run.guard.interval()
    run.feed(Sample(owner=True, live=True, score=0.8, on_battery=True), 1)
    assert run.guard.interval_factor == 2.0 and run.guard.interval() == 2 * normal
    run.step(Pause(None))
    assert run.guard.interval() == 2 * run.guard.sampling.paused_interval_s
