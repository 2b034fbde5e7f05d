"""The presence state machine over scripted samples and a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from facewarden.config import parse
from facewarden.events import Event
import support
from facewarden.core.guard import LockDone, Pause, Resume, Tick
from facewarden.core.presence import Sample, State
from facewarden.core.observation import FaceVerdict, Observation
from facewarden.core.observation import Face

OWNER = Sample(owner=True, live=True, score=0.8)
PENDING = Sample(owner=True, live=None, score=0.8)
EMPTY = Sample()
STRANGER = Sample(others=1, score=0.1)
ONLOOKER = Sample(owner=True, live=True, others=1, onlookers=1, score=0.8)
DARK = Sample(skipped=True)
LOST = Sample.camera_failed()


def config(**sections):
    return parse({"lock": {"after_absent_s": 10, "after_stranger_s": 2}, **sections})


def Run(cfg=None) -> support.Run:
    return support.Run(cfg or config())


def test_owner_arrives_once_and_never_locks_while_present():
    run = Run()
    assert run.feed(OWNER, 0.75) == [Event.OWNER_ARRIVED]
    assert run.machine.state == State.OWNER_PRESENT
    run.feed(OWNER, 600, step=1.0)
    assert run.names() == [Event.OWNER_ARRIVED]


def test_one_bad_frame_neither_locks_nor_verifies():
    run = Run()
    run.feed(OWNER, 2)
    # 2 of 5 frames missing the owner: still verified, no event, no state change.
    for _ in range(30):
        run.feed(EMPTY, 0.25)
        run.feed(OWNER, 0.75)
    assert run.names() == [Event.OWNER_ARRIVED]
    # ...and one owner frame among empty ones does not bring the owner back.
    run.feed(EMPTY, 15)
    assert run.machine.state == State.OWNER_ABSENT
    run.feed(OWNER, 0.25)
    run.feed(EMPTY, 1)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]


def test_owner_left_after_the_absence_delay_from_the_last_owner_frame():
    run = Run()
    run.feed(OWNER, 3)
    last_owner_frame = run.now
    run.feed(EMPTY, 20)
    (t, e), = [x for x in run.events if x[1] == Event.OWNER_LEFT]
    assert t - last_owner_frame == pytest.approx(10.0, abs=0.25)
    assert run.machine.state == State.OWNER_ABSENT


def test_an_unconfirmed_lock_fires_once_and_the_owner_back_ends_it():
    run = Run()
    run.feed(OWNER, 2)
    run.feed(EMPTY, 12)
    assert run.step(LockDone("command")) == [Event.LOCKED]
    assert run.step(LockDone("command")) == []
    assert run.guard.locked and run.guard.locked_by == "facewarden" and run.guard.wants_camera
    assert run.feed(OWNER, 1) == [Event.OWNER_ARRIVED]
    assert not run.guard.locked


def test_never_seen_owner_still_locks():
    run = Run()
    run.feed(EMPTY, 9.5)
    assert run.names() == [Event.OWNER_LEAVING]  # the warning, 5 s before the lock
    assert run.machine.state == State.PENDING
    run.feed(EMPTY, 1)
    assert run.names() == [Event.OWNER_LEAVING, Event.OWNER_LEFT]


def test_stranger_locks_after_the_stranger_delay():
    run = Run()
    run.feed(OWNER, 2)
    start = run.now
    run.feed(STRANGER, 5)
    (t, e), = [x for x in run.events if x[1] == Event.STRANGER_DETECTED]
    # k of n frames first (3 * 0.25 s), then after_stranger_s.
    assert 2.0 <= t - start <= 2.0 + 0.75 + 1e-9
    assert run.machine.state == State.STRANGER
    assert Event.OWNER_LEFT not in run.names()
    run.feed(STRANGER, 30)
    assert run.names().count(Event.STRANGER_DETECTED) == 1
    run.feed(EMPTY, 2)
    assert run.machine.state == State.OWNER_ABSENT
    assert run.feed(OWNER, 1) == [Event.OWNER_ARRIVED]


def test_a_passing_stranger_shorter_than_the_delay_fires_nothing():
    run = Run()
    run.feed(OWNER, 2)
    run.feed(STRANGER, 1.5)
    run.feed(OWNER, 3)
    assert run.names() == [Event.OWNER_ARRIVED]


def test_onlooker_once_per_appearance():
    run = Run()
    run.feed(OWNER, 2)
    assert run.feed(ONLOOKER, 3) == [Event.ONLOOKER_DETECTED]
    run.feed(OWNER, 3)
    assert run.feed(ONLOOKER, 3) == [Event.ONLOOKER_DETECTED]
    assert run.machine.state == State.OWNER_PRESENT


def test_onlooker_off_in_config():
    run = Run(config(onlooker={"enabled": False}))
    run.feed(OWNER, 2)
    assert run.feed(ONLOOKER, 3) == []


def test_skipped_frames_are_not_judged_but_the_clock_runs():
    run = Run()
    run.feed(OWNER, 2)
    # Dark frames do not count as absence evidence: the window still holds 5 owner frames...
    run.feed(DARK, 5)
    assert run.machine.state == State.OWNER_PRESENT
    # ...but nothing verifies the owner either, so the lock still comes after the delay.
    run.feed(DARK, 6)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]


def test_camera_failure_fails_closed_and_reports_transitions():
    run = Run()
    run.feed(OWNER, 2)
    assert run.feed(LOST, 0.25) == [Event.CAMERA_LOST]
    run.feed(LOST, 11)
    assert run.names() == [Event.OWNER_ARRIVED, Event.CAMERA_LOST, Event.OWNER_LEAVING, Event.OWNER_LEFT]
    assert run.feed(OWNER, 1) == [Event.CAMERA_RESTORED, Event.OWNER_ARRIVED]
    assert run.guard.camera_ok


def test_liveness_pending_holds_the_lock_then_counts_as_a_spoof():
    run = Run(config(liveness={"window_s": 20}))
    run.feed(OWNER, 2)
    run.feed(PENDING, 19.5)
    # A verified face awaiting liveness held the 10 s absence timer, but fired nothing.
    assert run.names() == [Event.OWNER_ARRIVED]
    run.feed(PENDING, 1)
    assert run.names() == [Event.OWNER_ARRIVED, Event.SPOOF_SUSPECTED]
    assert run.machine.state == State.STRANGER
    run.feed(PENDING, 30)
    assert run.names().count(Event.SPOOF_SUSPECTED) == 1


def test_owner_arrives_only_when_verified_and_live():
    run = Run(config(liveness={"window_s": 20}))
    run.feed(PENDING, 5)
    assert run.machine.state == State.PENDING and run.names() == []
    assert run.feed(OWNER, 0.25) == [Event.OWNER_ARRIVED]


def test_photo_never_becomes_the_owner_after_leaving():
    run = Run(config(liveness={"window_s": 5}))
    run.feed(OWNER, 2)
    run.feed(EMPTY, 12)
    run.feed(PENDING, 10)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT, Event.SPOOF_SUSPECTED]


def test_pause_silences_everything_until_resume():
    run = Run()
    run.feed(OWNER, 2)
    assert run.step(Pause(None)) == [Event.PAUSED]
    assert run.step(Pause(None)) == []
    run.feed(STRANGER, 30)
    run.feed(LOST, 30)
    assert run.names() == [Event.OWNER_ARRIVED, Event.PAUSED]
    assert run.machine.state == State.PAUSED and run.guard.interval() == 5.0
    assert not run.guard.wants_camera and run.guard.camera == "released (paused)"
    assert run.step(Resume()) == [Event.RESUMED]
    assert run.machine.state == State.PENDING
    assert run.feed(OWNER, 1) == [Event.OWNER_ARRIVED]


def test_timed_pause_resumes_by_itself():
    run = Run()
    run.step(Pause(run.now + 60))
    run.now += 59
    assert run.step(Tick()) == []
    run.now += 1
    assert run.step(Tick()) == [Event.RESUMED]


def test_cadence_follows_the_state():
    run = Run()
    cadence = run.guard.interval
    assert cadence() == 0.25  # nothing decided yet
    run.feed(OWNER, 2)
    assert cadence() == 1.0
    run.feed(EMPTY, 0.25)
    assert cadence() == 0.25  # the absence grace period is running
    run.feed(EMPTY, 12)
    assert cadence() == 1.0  # nobody there
    run.feed(STRANGER, 0.25)
    assert cadence() == 0.25  # a face not yet decided
    run.feed(STRANGER, 5)
    assert run.machine.state == State.STRANGER and cadence() == 1.0


def test_sample_from_an_observation():
    face = Face((0, 0, 10, 10), np.zeros((5, 2)), 0.9)
    obs = Observation((FaceVerdict(face, 0.7, True), FaceVerdict(face, 0.2, False), FaceVerdict(face, None, False)))
    s = Sample.of(obs, live=True)
    assert (s.owner, s.live, s.others, s.faces, s.score, s.skipped) == (True, True, 2, 3, 0.7, False)
    s = Sample.of(Observation(skipped="dark"), live=True)
    assert s.skipped and not s.owner and s.live is None
    s = Sample.of(Observation((FaceVerdict(face, 0.2, False),)), live=True)
    assert not s.owner and s.live is None and s.others == 1


def test_reconfigure_keeps_state_and_recent_evidence():
    run = Run()
    run.feed(OWNER, 2)
    run.machine.configure(config(presence={"window": 3, "required": 2}, lock={"after_absent_s": 4}))
    assert run.machine.state == State.OWNER_PRESENT and run.machine.owner_in_window
    run.feed(EMPTY, 3.75)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING]  # the warning at half the new 4 s
    run.feed(EMPTY, 0.5)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]
