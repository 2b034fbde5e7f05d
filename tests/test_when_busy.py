"""Presence while another program holds the camera: camera.when_busy = idle | pause | lock, over
scripted samples and a fake clock."""

from __future__ import annotations

import pytest

from facewarden.config import parse
import support
from facewarden.core.presence import Sample, State
from facewarden.events import Event

OWNER = Sample(owner=True, live=True, score=0.8)
LOST = Sample.camera_failed()


def busy(idle_s: float | None) -> Sample:
    return Sample.camera_busy(idle_s)


def Run(when_busy: str, idle_s: float = 60.0) -> support.Run:
    return support.Run(parse({"camera": {"when_busy": when_busy}, "lock": {"after_absent_s": 10, "idle_s": idle_s}}), every=1.0)


def present(when_busy: str, idle_s: float = 60.0) -> Run:
    run = Run(when_busy, idle_s)
    assert run.feed(OWNER, 3) == [Event.OWNER_ARRIVED]
    return run


def test_idle_holds_the_lock_through_a_call_with_input():
    run = present("idle")
    assert run.feed(busy(3.0), 600) == [Event.CAMERA_BUSY]  # ten minutes of call, owner typing
    assert run.machine.state == State.OWNER_PRESENT and run.guard.camera_ok
    # The call ends: the owner has the usual grace to be seen again.
    assert run.feed(OWNER, 2) == [Event.CAMERA_FREE]
    assert run.machine.state == State.OWNER_PRESENT


def test_idle_locks_a_call_left_on_an_empty_desk_once_input_stops():
    run = present("idle", idle_s=60)
    start = run.now
    assert run.feed(lambda t: busy(t), 120) == [Event.CAMERA_BUSY, Event.OWNER_LEFT]  # nobody types
    assert [(t - start, e) for t, e in run.events[1:]] == [(1.0, Event.CAMERA_BUSY), (60.0, Event.OWNER_LEFT)]


def test_idle_without_an_idle_source_fails_closed():
    run = present("idle")
    fired = run.feed(busy(None), 30)
    assert fired == [Event.CAMERA_BUSY, Event.OWNER_LEAVING, Event.OWNER_LEFT]  # after lock.after_absent_s, as "lock"


def test_pause_never_locks_while_busy():
    run = present("pause")
    assert run.feed(busy(None), 3600, step=5.0) == [Event.CAMERA_BUSY]
    assert run.feed(busy(10_000.0), 60) == []
    # Free again but nobody there: locks after_absent_s after the call ended, not before.
    start = run.now
    fired = run.feed(Sample(), 15)
    assert fired == [Event.CAMERA_FREE, Event.OWNER_LEAVING, Event.OWNER_LEFT]
    left_at = next(t for t, e in run.events if e == Event.OWNER_LEFT)
    assert left_at - start == pytest.approx(10.0, abs=1.0)


def test_lock_fails_closed_and_is_not_lost():
    run = present("lock")
    fired = run.feed(busy(1.0), 20)
    assert fired == [Event.CAMERA_BUSY, Event.OWNER_LEAVING, Event.OWNER_LEFT]
    assert run.guard.camera_ok and run.guard.camera_busy


def test_busy_then_lost_then_back():
    run = present("pause")
    assert run.feed(busy(None), 2) == [Event.CAMERA_BUSY]
    assert run.feed(LOST, 1)[:2] == [Event.CAMERA_FREE, Event.CAMERA_LOST]
    assert run.feed(OWNER, 2) == [Event.CAMERA_RESTORED]


def test_busy_samples_at_the_normal_pace():
    run = present("idle")
    run.feed(busy(1.0), 1)
    assert run.guard.interval() == run.guard.sampling.interval_s
