"""Paying for a face once: a face the model named (the owner, or anyone enrolled) is followed from
sample to sample and keeps its verdict without the encoder while it stays where it was and looks as
it did.

A face continues its track when it is found again in the same place (box overlap, size within
MAX_RESIZE) and looks the same: the normalised correlation of a small grey patch around its eyes
and nose against one of its last LOOKS samples', at the best shift within a few pixels (boxes jitter).
Anything else breaks the track and the face is judged by the model at once: a jump, a change of
size, another look (someone else sat down in the same place), two faces in its place, a dark or
blurred face (the verifier reads the followed face's box, not the frame, and drops the track), or
`reverify_s` since the model last judged it.

Where to look: while the followed face is the only face (and has proved life, where liveness is
on: until then its landmarks must be exactly where a full scan puts them), it is first looked for
where it was, by its look alone: within `full_scan_s` of the last look at the scene, a face that
still looks as it did there keeps its verdict with no detector at all (the look is compared at
the best shift within SLACK, so it is in the same place; someone cut in is another look). Else,
and every `full_scan_s`, the detector searches the region around it (`Detector.around`; a second
face there, or none, breaks the track and the frame is scanned), unless the face is still where the
detector last put it: its look then (the anchor) matches at a shift of at most STILL, so its box and
landmarks still hold (a face that drifts, however slowly, drifts from the anchor and is searched for).
A face found there in its place but looking different, or due to be re-verified, is judged by the
model on the spot; the rest of the frame waits for the next look at the scene. A face due to be
re-verified that is still where the detector last put it is judged there, with no search. Every `full_scan_s`
the parts of the scene that changed around the followed face (`Scene`) are searched for a face
(`Detector.within`), and the whole frame is scanned when one is there: a face that appears
elsewhere changes the scene, so it is seen in time, while a still room is not scanned for nothing
(at least every FULL_SCAN_MAX_S all the same) and a busy one costs the area that changed.
A scene where the last scan found nobody is searched again as soon as anything in it changes
(someone arriving), and not while nothing does.
While other faces are in the frame every sample scans it all and those faces are judged every time:
only the followed face skips the model.

The look is compared with the last samples' rather than the one the model last judged: a face at
a desk moves and turns over seconds, and turns back (a glance aside, a nod: the look two samples
ago matches again, also when the model judged the new look in between and named the same person
in the same place), while someone cut in between two samples is as far from those looks as from
any. The threshold and LOOKS come from `bench/calibrate_tracking.py` (NUAA's live clips sampled
once a second, and other people put exactly in their place).
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
LOOKS = 4  # the last samples' looks a face is compared with, newest first (bench/calibrate_tracking.py)
STILL = 1  # px of PATCH (a 150 px face: 5 frame px): a face matching its anchor within this has not moved
MIN_OVERLAP = 0.5  # intersection over union with the previous sample's box
MAX_RESIZE = 1.25  # the box's width may grow or shrink by this factor between two samples
FULL_SCAN_MAX_S = 30.0  # a still scene is scanned all the same this often
MAX_SEARCHED = 0.5  # a changed part larger than this share of the frame: the whole frame is scanned


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


def match(before: np.ndarray, after: np.ndarray) -> tuple[float, int]:
    """How alike two looks are (`patch`es at one scale): the normalised correlation (so a change of
    exposure does not count) of `before`'s middle against `after`, at the best shift within SLACK
    (about 0 for unrelated faces, 1 for the same image); and that shift, in PATCH px (the larger of
    its two parts)."""
    middle = before[SLACK:-SLACK, SLACK:-SLACK]
    _, best, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(after, middle, cv2.TM_CCOEFF_NORMED))
    return float(best), max(abs(x - SLACK), abs(y - SLACK))


def correlation(before: np.ndarray, after: np.ndarray) -> float:
    """`match`'s correlation alone."""
    return match(before, after)[0]


def _still(anchor: np.ndarray, current: np.ndarray) -> bool:
    """The face looks as it did at its anchor, at most STILL px from it."""
    alike, shift = match(anchor, current)
    return alike >= MIN_CORRELATION and shift <= STILL


def same_spot(before: Face, after: Face) -> bool:
    """`after` continues `before`: overlapping boxes of about the same size."""
    ratio = after.box[2] / before.box[2] if before.box[2] > 0 else 0.0
    return overlap(before.box, after.box) >= MIN_OVERLAP and 1 / MAX_RESIZE <= ratio <= MAX_RESIZE


@dataclass(frozen=True)
class _Track:
    verdict: FaceVerdict  # the model's verdict, its face where it was seen last
    looks: tuple[tuple[Face, np.ndarray], ...]  # the last LOOKS samples' faces and looks (at its width), newest last
    verified_at: float  # when the model last judged it
    anchor: np.ndarray  # its look where the detector last found it (the box its face carries)


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
        self._scanned_at = -np.inf  # the last scan of the whole frame, or search of what changed
        self._looked_at = -np.inf  # the last time the scene was looked at (the followed face's region too)

    def drop(self) -> None:
        """Forget the followed face: the next sample is judged in full."""
        self._track = None

    def followed_box(self, precise: bool = False) -> tuple[float, float, float, float] | None:
        """The box of the face the next `faces` call looks for where it was (the only face, none
        proving life), where the detector found it last; None when that call scans the frame."""
        track = self._track
        return track.verdict.face.box if track is not None and self._alone and not precise else None

    def faces(self, frame: np.ndarray, now: float, precise: bool = False) -> tuple[FaceVerdict, ...]:
        """The frame's faces and verdicts. `precise`: every face exactly where a full scan finds it
        (a face proving life: the liveness cues read its landmarks' motion), so the whole frame is
        scanned; else the followed face is looked for where it was (by its look, or in its region
        with `Detector.around`)."""
        track = self._track
        if track is None and self._empty and not self._scan_due(frame, now, None):
            return ()  # nobody at the last scan, and nothing has changed since
        if track is not None and self._alone and not precise:
            looked = _within(self._looked_at, now, self.full_scan_s)
            due = not _within(track.verified_at, now, self.reverify_s)
            if looked and not due and (kept := self._follow(frame, None, now)) is not None:
                return (kept,)  # where it was found lately, looking as it did: no detector
            if not self._scan_due(frame, now, track.verdict.face):
                if (due or not looked) and (kept := self._unmoved(frame, now, due)) is not None:
                    return (kept,)  # nobody new in the scene, and the face not moved from its box
                found = self.detector.around(frame, track.verdict.face.box)
                if len(found) == 1 and same_spot(track.verdict.face, found[0]):
                    kept = self._follow(frame, found[0], now)
                    if kept is None:  # looks different, or due to be re-verified: judged on the spot
                        kept = self.judge(frame, found[0])
                        self._start(frame, (kept,), now)
                    return (kept,)
                self._track = None  # broken: the whole frame is looked at and judged now
        found = self.detector(frame)
        self._scanned_at = self._looked_at = now
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
        passed and someone came into view around it; in an empty scene, as soon as someone came into
        view. The part of the scene that changed since the last scan is searched first (`Scene`,
        `Detector.within`): a change with no face in it (a passer-by's back, a curtain) costs its area,
        not a scan."""
        if followed is not None and _within(self._looked_at, now, self.full_scan_s):
            return False
        if not _within(self._scanned_at, now, FULL_SCAN_MAX_S):
            return True
        self._looked_at = now
        region = self.scene.changed(frame, followed)
        if region is None:
            return False
        x0, y0, x1, y1 = region
        if (x1 - x0) * (y1 - y0) > MAX_SEARCHED * frame.shape[0] * frame.shape[1]:
            return True
        if any(followed is None or not overlap(followed.box, f.box) for f in self.detector.within(frame, region)):
            return True
        self._scanned_at = now  # as good as a scan: nothing new where anything changed
        self.scene.scanned(frame, [] if followed is None else [followed])
        return False

    def _start(self, frame: np.ndarray, verdicts: tuple[FaceVerdict, ...], now: float) -> None:
        """Follow the one face the model named, if one: strangers are judged every time."""
        named = [v for v in verdicts if v.person is not None and not face_problem(v.face, self.min_score)]
        if len(named) != 1:
            self._track = None
            return
        face, before = named[0].face, self._track
        looks: tuple[tuple[Face, np.ndarray], ...] = ((face, patch(frame, face.box, face.box[2])),)
        if before is not None and before.verdict.person == named[0].person and same_spot(before.verdict.face, face):
            looks = (*before.looks, *looks)[-LOOKS:]  # the same person judged again in place: their looks still hold
        self._track = _Track(named[0], looks, now, looks[-1][1])

    def _unmoved(self, frame: np.ndarray, now: float, due: bool) -> FaceVerdict | None:
        """The followed face's verdict when it is still where the detector last put it (its anchor
        matches within STILL), so that its box and landmarks hold without searching for it: kept while
        it looks as it did, or when `due` to be re-verified, the model's on that face. None: it moved."""
        track = self._track
        assert track is not None
        face = track.verdict.face
        current = patch(frame, face.box, face.box[2])
        if not _still(track.anchor, current):
            return None
        if due:
            verdict = self.judge(frame, face)
            self._start(frame, (verdict,), now)
            return verdict
        return self._follow(frame, None, now, current)

    def _follow(self, frame: np.ndarray, face: Face | None, now: float,
                current: np.ndarray | None = None) -> FaceVerdict | None:
        """The track's verdict for `face` when it continues the track (and the track moves on); else
        None. `face` None: the face where the detector found it last, not looked for this sample;
        `current`: its look there, when already taken."""
        track = self._track
        assert track is not None
        if not _within(track.verified_at, now, self.reverify_s):
            return None
        found = face is not None
        if face is None:
            face = track.verdict.face
        elif face_problem(face, self.min_score) or not same_spot(track.verdict.face, face):
            return None
        # Where the face was, at its scale: boxes of one face jitter by pixels between samples (and
        # between the full scan's and the region's), which would shift the look by fractions of a
        # pixel; the face itself moving is what SLACK is for.
        if current is None:
            current = patch(frame, face.box, face.box[2])  # (followed by its look: where its last look was taken)
        if not any(correlation(look, current if then.box == face.box else patch(frame, then.box, then.box[2]))
                   >= MIN_CORRELATION for then, look in reversed(track.looks)):
            return None
        verdict = replace(track.verdict, face=face, tracked=True)
        looks = (*track.looks, (face, current))[-LOOKS:]
        self._track = replace(track, verdict=verdict, looks=looks, anchor=current if found else track.anchor)
        return verdict


class Scene:
    """Where anything changed around the followed face since the last scan: a small grey copy of the
    frame taken at each scan (or search of the changed part), compared block by block with the frame
    now. The followed person is left out (their face and the column below it, then and now: a head
    that turns, shoulders, hands), and so is a change of the light as a whole (auto-exposure), which
    moves every block alike. Someone who comes into view elsewhere changes the blocks they cover."""

    SCALE = 8  # the copy is an eighth of the frame each way...
    BLOCK = 4  # ...and a block 4 px of it (32 frame px)
    MIN_CHANGE = 12.0  # grey levels a block's mean difference must exceed (bench/calibrate_tracking.py)
    GROW = 2  # blocks each way the changed part grows by as it is searched for a face

    def __init__(self) -> None:
        self._then: np.ndarray | None = None  # the copy at the last scan
        self._faces: list[Face] = []  # the faces that scan found

    def _copy(self, frame: np.ndarray) -> np.ndarray:
        # Bilinear, not area: a tenth of the cost, and the blocks average the noise it keeps.
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, w // self.SCALE), max(1, h // self.SCALE)), interpolation=cv2.INTER_LINEAR)
        return (small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)).astype(np.float32)

    def scanned(self, frame: np.ndarray, faces: list[Face]) -> None:
        self._then, self._faces = self._copy(frame), faces

    def changed(self, frame: np.ndarray, followed: Face | None) -> tuple[int, int, int, int] | None:
        """Where the scene changed around the followed person (None: anywhere) since the last scan:
        the box (x0, y0, x1, y1, frame pixels) of the blocks that changed, GROW blocks more each way
        (a face there whole, with the room the detector needs around it); the whole frame when there
        is nothing to compare with; None: nothing changed."""
        h, w = frame.shape[:2]
        excess = self._excess(frame, followed)
        if excess is None:
            return (0, 0, w, h)
        rows, cols = np.nonzero(excess > self.MIN_CHANGE)
        if not rows.size:
            return None
        side, grow = self.SCALE * self.BLOCK, self.GROW
        return (max(0, int(cols.min() - grow) * side), max(0, int(rows.min() - grow) * side),
                min(w, int(cols.max() + 1 + grow) * side), min(h, int(rows.max() + 1 + grow) * side))

    def change(self, frame: np.ndarray, followed: Face | None) -> float:
        """The largest change of a block around the followed person (None: anywhere) beyond the
        light's, in grey levels (inf: no copy to compare with; 0: nothing around them to see)."""
        excess = self._excess(frame, followed)
        return np.inf if excess is None else float(excess.max())

    def _excess(self, frame: np.ndarray, followed: Face | None) -> np.ndarray | None:
        """Each block's change beyond the light's (the median block's), 0 where the followed person
        is; None: no copy to compare with."""
        now = self._copy(frame)
        if self._then is None or now.shape != self._then.shape:
            return None
        b = self.BLOCK
        rows, cols = now.shape[0] // b, now.shape[1] // b
        if not rows or not cols:
            return None
        diff = cv2.absdiff(now, self._then)[: rows * b, : cols * b]
        blocks = cv2.resize(diff, (cols, rows), interpolation=cv2.INTER_AREA)  # each block's mean
        around = np.ones((rows, cols), bool)
        for face in (*self._faces, *([] if followed is None else [followed])):
            x, y, w, h = (v / (self.SCALE * b) for v in face.box)
            around[max(0, int(y - 0.3 * h)):, max(0, int(x - 0.5 * w)):max(0, int(np.ceil(x + 1.5 * w)))] = False
        if not around.any():
            return np.zeros_like(blocks)  # the followed person fills the view: nobody else fits in it
        return np.where(around, blocks - np.median(blocks[around]), 0.0)
