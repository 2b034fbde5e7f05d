"""Paying for a face once: a face the model named (the owner, or anyone enrolled) is followed from
sample to sample and keeps its verdict without the encoder while it stays where it was and looks as
it did.

A face continues its track when it is found again in the same place (box overlap, size within
MAX_RESIZE) and looks the same: the normalised correlation of a small grey patch around its eyes
and nose against the previous sample's, at the best shift within a few pixels (boxes jitter).
Anything else breaks the track and the face is judged by the model at once: a jump, a change of
size, another look (someone else sat down in the same place), two faces in its place, a dark or
blurred frame (the verifier drops the track), or `reverify_s` since the model last judged it.

Where to look: while the followed face is the only face (and has proved life, where liveness is
on: until then its landmarks must be exactly where a full scan puts them), samples between
full-frame scans search only the region around it (`Detector.around`; a second face there, or
none, breaks the track and the frame is scanned). A face found there in its place but looking different, or due to be
re-verified, is judged by the model on the spot; the rest of the frame waits for its scan. A
full-frame scan runs every `full_scan_s` while the scene around the followed face changes (`Scene`):
a face that appears elsewhere changes it, so it is seen in time, and a still room is not scanned
for nothing (at least every FULL_SCAN_MAX_S all the same). A scene where the last scan found nobody
is scanned again as soon as anything in it changes (someone arriving), and not while nothing does.
While other faces are in the frame every sample scans it all and those faces are judged every time:
only the followed face skips the model.

The look is compared with the previous sample's rather than the one the model last judged: a
face at a desk moves and turns over seconds, while someone cut in between two samples is as far
from the previous look as from any. The threshold comes from `bench/calibrate_tracking.py` (NUAA's
live clips sampled once a second, and other people put exactly in their place).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np

from ..core.adapt_track import overlap
from ..core.observation import Face, FaceVerdict, face_problem
from .vision import Detector

PATCH = 32  # px: a square as wide as the face box, around its eyes and nose, as the look is compared
SLACK = 6  # px of PATCH each way the face may have moved within its box (boxes jitter by that much)
MIDDLE = 0.4  # the square's centre, down the box (the box runs from brow to chin: its eyes and nose)
MIN_CORRELATION = 0.92  # below it the face looks different: judged again (bench/calibrate_tracking.py)
MIN_OVERLAP = 0.5  # intersection over union with the previous sample's box
MAX_RESIZE = 1.25  # the box's width may grow or shrink by this factor between two samples
FULL_SCAN_MAX_S = 30.0  # a still scene is scanned all the same this often


def patch(frame: np.ndarray, box: tuple[float, float, float, float], width: float) -> np.ndarray:
    """The look of the square around `box`'s eyes and nose, `width` frame pixels scaled to PATCH px (and
    SLACK more each way), grey, float32. Sampled at twice the size, then averaged down: a direct warp
    samples a 150 px face sparsely, and that noise would read as change."""
    x, y, w, h = box
    side = PATCH + 2 * SLACK
    scale = 2 * PATCH / width
    matrix = np.array([[scale, 0, side - scale * (x + w / 2)], [0, scale, side - scale * (y + h * MIDDLE)]])
    warped = cv2.warpAffine(frame, matrix, (2 * side, 2 * side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    grey = warped if warped.ndim == 2 else cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def correlation(before: np.ndarray, after: np.ndarray) -> float:
    """How alike two looks are (`patch`es at one scale): the normalised correlation (so a change of
    exposure does not count) of `before`'s middle against `after`, at the best shift within SLACK:
    about 0 for unrelated faces, 1 for the same image."""
    middle = before[SLACK:-SLACK, SLACK:-SLACK]
    return float(cv2.matchTemplate(after, middle, cv2.TM_CCOEFF_NORMED).max())


def same_spot(before: Face, after: Face) -> bool:
    """`after` continues `before`: overlapping boxes of about the same size."""
    ratio = after.box[2] / before.box[2] if before.box[2] > 0 else 0.0
    return overlap(before.box, after.box) >= MIN_OVERLAP and 1 / MAX_RESIZE <= ratio <= MAX_RESIZE


@dataclass(frozen=True)
class _Track:
    verdict: FaceVerdict  # the model's verdict, its face where it was seen last
    patch: np.ndarray  # the face's look at the previous sample, at that sample's box width
    verified_at: float  # when the model last judged it


def _within(since: float, now: float, period: float) -> bool:
    """Less than `period` has passed since `since` (a clock that went back counts as expired)."""
    return 0.0 <= now - since < period


class Tracker:
    """The faces of a frame, judged by `judge` (the encoder) except the one followed face."""

    def __init__(self, detector: Detector, judge: Callable[[np.ndarray, Face], FaceVerdict],
                 reverify_s: float, full_scan_s: float, min_score: float):
        self.detector = detector
        self.judge = judge
        self.reverify_s = reverify_s
        self.full_scan_s = full_scan_s
        self.min_score = min_score
        self._track: _Track | None = None
        self.scene = Scene()
        self._alone = False  # the last full scan found the followed face and no other...
        self._empty = False  # ...or no face at all
        self._scanned_at = -np.inf

    def drop(self) -> None:
        """Forget the followed face: the next sample is judged in full."""
        self._track = None

    def faces(self, frame: np.ndarray, now: float, precise: bool = False) -> tuple[FaceVerdict, ...]:
        """The frame's faces and verdicts. `precise`: every face exactly where a full scan finds it
        (a face proving life: the liveness cues read its landmarks' motion), so the whole frame is
        scanned; else the followed face is searched for in its region (`Detector.around`)."""
        track = self._track
        if track is None and self._empty and not self._scan_due(frame, now, None):
            return ()  # nobody at the last scan, and nothing has changed since
        if track is not None and self._alone and not precise and not self._scan_due(frame, now, track.verdict.face):
            found = self.detector.around(frame, track.verdict.face.box)
            if len(found) == 1 and same_spot(track.verdict.face, found[0]):
                kept = self._follow(frame, found[0], now)
                if kept is None:  # looks different, or due to be re-verified: judged on the spot
                    kept = self.judge(frame, found[0])
                    self._start(frame, (kept,), now)
                return (kept,)
            self._track = None  # broken: the whole frame is looked at and judged now
        found = self.detector(frame)
        self._scanned_at = now
        kept = None
        if self._track is not None:
            there = [f for f in found if same_spot(self._track.verdict.face, f)]
            kept = self._follow(frame, there[0], now) if len(there) == 1 else None
        verdicts = tuple(kept if kept is not None and f is kept.face else self.judge(frame, f) for f in found)
        self._alone, self._empty = len(found) == 1, not found
        if kept is None:
            self._start(frame, verdicts, now)
        self.scene.scanned(frame, [v.face for v in verdicts])
        return verdicts

    def _scan_due(self, frame: np.ndarray, now: float, followed: Face | None) -> bool:
        """Whether this sample scans the whole frame: while a face is followed, once `full_scan_s`
        passed and the scene changed around it; in an empty scene, as soon as anything changed."""
        if followed is not None and _within(self._scanned_at, now, self.full_scan_s):
            return False
        return not _within(self._scanned_at, now, FULL_SCAN_MAX_S) or self.scene.changed(frame, followed)

    def _start(self, frame: np.ndarray, verdicts: tuple[FaceVerdict, ...], now: float) -> None:
        """Follow the one face the model named, if one: strangers are judged every time."""
        named = [v for v in verdicts if v.person is not None and not face_problem(v.face, self.min_score)]
        if len(named) == 1:
            box = named[0].face.box
            self._track = _Track(named[0], patch(frame, box, box[2]), now)
        else:
            self._track = None

    def _follow(self, frame: np.ndarray, face: Face, now: float) -> FaceVerdict | None:
        """The track's verdict for `face` when it continues the track (and the track moves on); else None."""
        track = self._track
        assert track is not None
        if not _within(track.verified_at, now, self.reverify_s) or face_problem(face, self.min_score):
            return None
        if not same_spot(track.verdict.face, face):
            return None
        # Where the face was, at its scale: boxes of one face jitter by pixels between samples (and
        # between the full scan's and the region's), which would shift the look by fractions of a
        # pixel; the face itself moving is what SLACK is for.
        if correlation(track.patch, patch(frame, track.verdict.face.box, track.verdict.face.box[2])) < MIN_CORRELATION:
            return None
        verdict = replace(track.verdict, face=face, tracked=True)
        self._track = replace(track, verdict=verdict, patch=patch(frame, face.box, face.box[2]))
        return verdict


class Scene:
    """Whether anything changed around the followed face since the last full scan: a small grey copy
    of the frame taken at each full scan, compared block by block with the frame now. The followed
    person is left out (their face and the column below it, then and now: a head that turns,
    shoulders, hands), and so is a change of the light as a whole (auto-exposure), which moves every
    block alike. Someone who comes into view elsewhere changes the blocks they cover."""

    SCALE = 8  # the copy is an eighth of the frame each way...
    BLOCK = 4  # ...and a block 4 px of it (32 frame px)
    MIN_CHANGE = 12.0  # grey levels a block's mean difference must exceed (bench/calibrate_tracking.py)

    def __init__(self) -> None:
        self._then: np.ndarray | None = None  # the copy at the last full scan
        self._faces: list[Face] = []  # the faces that scan found

    def _copy(self, frame: np.ndarray) -> np.ndarray:
        # Bilinear, not area: a tenth of the cost, and the blocks average the noise it keeps.
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, w // self.SCALE), max(1, h // self.SCALE)), interpolation=cv2.INTER_LINEAR)
        return (small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)).astype(np.float32)

    def scanned(self, frame: np.ndarray, faces: list[Face]) -> None:
        self._then, self._faces = self._copy(frame), faces

    def changed(self, frame: np.ndarray, followed: Face | None) -> bool:
        return self.change(frame, followed) > self.MIN_CHANGE

    def change(self, frame: np.ndarray, followed: Face | None) -> float:
        """The largest change of a block around the followed person (None: anywhere) beyond the
        light's, in grey levels (inf: no copy to compare with; 0: nothing around them to see)."""
        now = self._copy(frame)
        if self._then is None or now.shape != self._then.shape:
            return np.inf
        b = self.BLOCK
        rows, cols = now.shape[0] // b, now.shape[1] // b
        if not rows or not cols:
            return np.inf
        diff = cv2.absdiff(now, self._then)[: rows * b, : cols * b]
        blocks = cv2.resize(diff, (cols, rows), interpolation=cv2.INTER_AREA)  # each block's mean
        around = np.ones((rows, cols), bool)
        for face in (*self._faces, *([] if followed is None else [followed])):
            x, y, w, h = (v / (self.SCALE * b) for v in face.box)
            around[max(0, int(y - 0.3 * h)):, max(0, int(x - 0.5 * w)):max(0, int(np.ceil(x + 1.5 * w)))] = False
        if not around.any():
            return 0.0  # the followed person fills the view: nobody else fits in it
        rest = blocks[around]
        return float((rest - np.median(rest)).max())
