"""The per-frame pipeline: frame -> faces -> owner scores -> Observation."""

from __future__ import annotations

from dataclasses import dataclass

from .vision import Face


@dataclass(frozen=True)
class FaceVerdict:
    face: Face
    score: float | None  # similarity to the owner; None when the face was not judged (too small, poor)
    owner: bool


@dataclass(frozen=True)
class Observation:
    faces: tuple[FaceVerdict, ...] = ()
    skipped: str | None = None  # why the frame was not judged at all ("dark", "blurry"), else None

    @property
    def owner_face(self) -> FaceVerdict | None:
        owners = [f for f in self.faces if f.owner]
        return max(owners, key=lambda f: f.score or 0.0) if owners else None
