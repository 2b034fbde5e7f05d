"""Softer answers in the pure core, on a fake clock: the warning before the absence lock, attention
(looking away), the idle-inhibitor exception, and faces too poorly lit to call strangers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewarden.config import parse
from facewarden.core.attention import Attention, Look
from facewarden.core.guard import Pause
from facewarden.core.observation import Face, FaceVerdict, Observation, poorly_lit, shadow_level
from facewarden.core.presence import Sample, State
from facewarden.events import Event
from test_presence import EMPTY, LOST, OWNER, STRANGER, Run

UNSURE = Sample(unsure=1, score=0.2)  # a face the light leaves too little of to tell
INHIBITED_EMPTY = Sample(inhibited=True)


def config(**sections):
    return parse({"lock": {"after_absent_s": 10, "after_stranger_s": 2, **sections.pop("lock", {})}, **sections})


def times(run: Run, event: Event) -> list[float]:
    return [t - 1000.0 for t, e in run.events if e == event]


# -- the warning before the lock --------------------------------------------------------------

def test_owner_back_in_time_gets_the_warning_then_its_withdrawal_and_no_lock():
    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(EMPTY, 7)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING]
    assert times(run, Event.OWNER_LEAVING) == [2 + 5.0]  # the last 5 of the 10 s, from the last owner frame
    assert run.machine.warned
    # One owner frame takes it back, on that very sample.
    assert run.feed(OWNER, 0.25) == [Event.OWNER_STAYED]
    run.feed(OWNER, 60)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_STAYED]
    assert not run.machine.warned


def test_owner_gone_for_good_is_warned_then_locked_and_the_warning_ends_there():
    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(EMPTY, 15)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]
    assert times(run, Event.OWNER_LEFT) == [2 + 10.0]  # the lock comes no later than before
    assert not run.machine.warned
    # Back after the lock: arrived, no owner_stayed (the lock restored the brightness).
    run.feed(OWNER, 2)
    assert run.names()[-1] == Event.OWNER_ARRIVED


def test_warn_s_zero_means_no_warning_and_is_at_most_half_the_absence():
    run = Run(config(lock={"warn_s": 0}))
    run.feed(OWNER, 2)
    run.feed(EMPTY, 15)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEFT]
    run = Run(config(lock={"warn_s": 30}))
    run.feed(OWNER, 2)
    run.feed(EMPTY, 15)
    assert times(run, Event.OWNER_LEAVING) == [2 + 5.0]


@pytest.mark.parametrize("hold", ["pause", "busy"])
def test_whatever_holds_the_absence_timer_withdraws_the_warning(hold):
    run = Run(config(camera={"when_busy": "pause"}))
    run.feed(OWNER, 2)
    run.feed(EMPTY, 6)
    assert run.machine.warned
    if hold == "pause":
        assert run.step(Pause(None)) == [Event.OWNER_STAYED, Event.PAUSED]
    else:
        assert run.feed(Sample.camera_busy(None), 0.25) == [Event.CAMERA_BUSY, Event.OWNER_STAYED]
        run.feed(Sample.camera_busy(None), 60)
    assert Event.OWNER_LEFT not in run.names()


# -- lock.pause_while_inhibited ---------------------------------------------------------------

def test_an_idle_inhibitor_holds_the_absence_lock_only_when_configured():
    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(INHIBITED_EMPTY, 15)
    assert Event.OWNER_LEFT in run.names()  # off by default

    run = Run(config(lock={"pause_while_inhibited": True}))
    run.feed(OWNER, 2)
    run.feed(INHIBITED_EMPTY, 600, step=1.0)
    assert run.names() == [Event.OWNER_ARRIVED]
    # The film ends, the sofa is empty: warned, then locked, as after any absence.
    run.feed(EMPTY, 11)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]


def test_an_idle_inhibitor_never_holds_off_a_stranger_or_a_lost_camera():
    run = Run(config(lock={"pause_while_inhibited": True}))
    run.feed(OWNER, 2)
    run.feed(Sample(others=1, score=0.1, inhibited=True), 3)
    assert Event.STRANGER_DETECTED in run.names()

    run = Run(config(lock={"pause_while_inhibited": True}))
    run.feed(OWNER, 2)
    run.feed(LOST, 11)  # a failed camera's sample carries no inhibitor: it fails closed
    assert Event.OWNER_LEFT in run.names()


# -- unsure: too poorly lit to judge ----------------------------------------------------------

def test_a_face_too_poorly_lit_to_judge_is_never_a_stranger_and_the_warning_comes_first():
    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(UNSURE, 15)
    assert run.names() == [Event.OWNER_ARRIVED, Event.OWNER_LEAVING, Event.OWNER_LEFT]
    assert times(run, Event.OWNER_LEFT) == [2 + 10.0]
    assert run.machine.state == State.OWNER_ABSENT


def test_a_stranger_in_good_light_is_a_stranger_as_fast_as_before():
    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(STRANGER, 4)
    assert run.names() == [Event.OWNER_ARRIVED, Event.STRANGER_DETECTED]
    # Three stranger frames of five decide it (at 0.75 s), then after_stranger_s = 2 s.
    assert times(run, Event.STRANGER_DETECTED) == [2 + 0.75 + 2.0]


def test_sample_counts_unsure_faces_apart_from_strangers():
    def verdict(person=None, owner=False, unsure=False):
        return FaceVerdict(Face((0, 0, 80, 80), np.zeros((5, 2)), 0.9), 0.2, owner, person, unsure)

    s = Sample.of(Observation((verdict(unsure=True), verdict(), verdict("bob"))), None)
    assert (s.unsure, s.others, s.known, s.faces) == (1, 1, 1, 2)
    # Beside the owner a face too dark to tell is still an onlooker (it can read the screen all the same).
    s = Sample.of(Observation((verdict("owner", owner=True), verdict(unsure=True))), True)
    assert (s.owner, s.others, s.unsure, s.onlookers) == (True, 0, 1, 1)


def test_side_light_makes_a_real_face_poorly_lit_and_daylight_does_not(astronaut_bgr):
    from facewarden.recognition import vision

    face = vision.nearest_centre(vision.Detector(320, 0.6)(astronaut_bgr), astronaut_bgr.shape)
    crop = cv2.cvtColor(vision.align(astronaut_bgr, face), cv2.COLOR_BGR2RGB)
    assert not poorly_lit(crop)
    # The bench's dim side light (bench_accuracy.side_light): the far half at a quarter of a dim level.
    ramp = np.linspace(0.55, 0.14, crop.shape[1], dtype=np.float32)[None, :, None]
    assert poorly_lit((crop * ramp).astype(np.uint8))
    assert shadow_level(crop[:, ::-1]) == pytest.approx(shadow_level(crop))  # either side


# -- attention --------------------------------------------------------------------------------

class Watch:
    def __init__(self, **attention):
        self.attention = Attention(parse({"attention": attention}))
        self.now = 0.0
        self.events: list[tuple[float, Event]] = []

    def feed(self, look: Look, seconds: float, step: float = 1.0) -> list[Event]:
        fired = []
        for _ in range(round(seconds / step)):
            self.now += step
            for e in self.attention.observe(look, self.now):
                fired.append(e)
                self.events.append((self.now, e))
        return fired


FACING = Look(present=True, yaw=0.05)
TURNED = Look(present=True, yaw=0.8)


def test_looking_away_dims_after_dim_after_s_and_facing_again_restores_on_that_sample():
    w = Watch()
    w.feed(FACING, 5)
    assert w.feed(TURNED, 15) == [Event.OWNER_LOOKING_AWAY]
    assert w.events[0][0] == 5 + 1 + 10  # the first turned sample at 6 s, ten seconds on
    assert w.attention.pace(1.0, 0.25) == 0.25  # dimmed: sampled as in doubt, to restore at once
    assert w.feed(FACING, 1) == [Event.OWNER_LOOKING_BACK]
    assert w.attention.pace(1.0, 0.25) == 1.0
    assert w.feed(TURNED, 9) == []  # a fresh look-away needs its full ten seconds again


def test_a_yaw_that_jitters_around_the_limit_still_dims_and_only_a_frontal_face_restores():
    w = Watch()  # max_yaw 0.45: facing again under 0.36
    for _ in range(6):
        w.feed(Look(True, 0.55), 1)
        w.feed(Look(True, 0.40), 1)  # a still, turned head measured a little less turned
    assert [e for _, e in w.events] == [Event.OWNER_LOOKING_AWAY]
    assert w.feed(Look(True, 0.40), 5) == []
    assert w.feed(Look(True, 0.30), 1) == [Event.OWNER_LOOKING_BACK]
    assert Watch().feed(Look(True, 0.40), 60) == []  # never turned past the limit: facing


def test_a_glance_away_shorter_than_dim_after_s_does_nothing():
    w = Watch()
    for _ in range(20):
        w.feed(TURNED, 9)
        w.feed(FACING, 1)
    assert w.events == []


def test_no_owner_face_while_presence_holds_the_owner_counts_as_turned():
    w = Watch(dim_after_s=3)
    assert w.feed(Look(present=True, yaw=None), 4) == [Event.OWNER_LOOKING_AWAY]
    assert w.feed(Look(present=False, yaw=None), 1) == [Event.OWNER_LOOKING_BACK]  # gone: the dim is presence's now


@pytest.mark.parametrize("look", [Look(True, 0.8, inhibited=True), Look(True, 0.8, busy=True),
                                  Look(True, 0.8, monitors=2)])
def test_attention_is_off_with_an_inhibitor_a_busy_camera_or_two_monitors(look):
    w = Watch()
    assert w.feed(look, 60) == []
    w.feed(TURNED, 12)
    assert w.feed(look, 1) == [Event.OWNER_LOOKING_BACK]  # switching off restores at once


def test_two_monitors_when_configured_on_and_a_wider_limit():
    assert Watch(with_monitors=True).feed(Look(True, 0.8, monitors=2), 11) == [Event.OWNER_LOOKING_AWAY]
    assert Watch(max_yaw=0.9).feed(TURNED, 60) == []
    assert Watch(enabled=False).feed(TURNED, 60) == []


def test_a_sample_carries_the_owner_faces_yaw_to_attention():
    landmarks = np.array([[30, 40], [70, 40], [70, 60], [35, 80], [65, 80]], float)  # nose under the left eye
    owner = FaceVerdict(Face((0, 0, 100, 100), landmarks, 0.9), 0.8, True, "owner")
    assert Sample.of(Observation((owner,)), True).yaw == pytest.approx(0.5)
    assert Sample.of(Observation(), True).yaw is None
    run = Run(config())
    run.feed(OWNER, 2)
    turned = Sample.of(Observation((owner,)), True)
    assert run.feed(turned, 10.5) == [Event.OWNER_LOOKING_AWAY]  # past 0.45 for attention.dim_after_s
    assert run.feed(OWNER, 0.25) == [Event.OWNER_LOOKING_BACK]


# -- onlookers --------------------------------------------------------------------------------

def test_onlooker_gone_follows_onlooker_detected():
    from test_presence import ONLOOKER

    run = Run(config())
    run.feed(OWNER, 2)
    run.feed(ONLOOKER, 2)
    run.feed(OWNER, 2)
    assert run.names() == [Event.OWNER_ARRIVED, Event.ONLOOKER_DETECTED, Event.ONLOOKER_GONE]

