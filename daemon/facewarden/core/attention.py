"""Attention: is the verified owner facing the screen? Pure, fed once a sample; events come out.

The owner verified (presence says present) but turned from the screen, head yaw past
`attention.max_yaw` (`core/onlooker.yaw`: 0 frontal, 0.45 about 45 degrees), or with no owner face
in the frame while presence still holds them present, for `attention.dim_after_s`:
`owner_looking_away` (its default action dims). Facing it again, or anything that switches
attention off: `owner_looking_back` (restores) on that very sample. Never a lock: the absence
warning and lock are presence's.

Off while the camera is busy (nothing to see), while an application holds an idle inhibitor (a film
watched from the sofa, a presentation) and, unless `attention.with_monitors`, while more than one
monitor is connected (the owner may be looking at the other one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..events import Event

if TYPE_CHECKING:  # only for annotations: the core does not load pydantic
    from ..config import Config


FACING = 0.8  # of attention.max_yaw: under it a turned owner faces the screen again


@dataclass(frozen=True)
class Look:
    """One sample as attention sees it."""

    present: bool  # presence holds the owner present (verified, live)
    yaw: float | None  # the owner face's yaw in this frame; None: no owner face in it
    inhibited: bool = False  # an idle inhibitor is held
    busy: bool = False  # another program holds the camera
    monitors: int = 1  # connected monitors


def turning(config: Config) -> float:
    """The owner face's yaw from which the next sample must measure it as a full scan does (a
    region's landmarks are a few hundredths off, enough to miss the limit); inf with attention off."""
    return config.attention.max_yaw * FACING if config.attention.enabled else float("inf")


class Attention:
    def __init__(self, config: Config):
        self.since: float | None = None  # when the owner turned away
        self.away = False  # owner_looking_away fired, owner_looking_back not yet
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.enabled = config.attention.enabled
        self.dim_after_s = config.attention.dim_after_s
        self.max_yaw = config.attention.max_yaw
        self.with_monitors = config.attention.with_monitors

    def watching(self, look: Look) -> bool:
        """Whether attention applies now."""
        return (self.enabled and not look.busy and not look.inhibited
                and (look.monitors <= 1 or self.with_monitors))

    def _turned(self, look: Look) -> bool:
        if not look.present:
            return False
        if look.yaw is None or look.yaw > self.max_yaw:
            return True
        # Hysteresis: the yaw of a still head jitters by about 0.1 from frame to frame, so once turned
        # only a clearly frontal face (under FACING of the limit) counts as facing the screen again.
        return self.since is not None and look.yaw >= self.max_yaw * FACING

    def observe(self, look: Look, now: float) -> list[Event]:
        if not self.watching(look) or not self._turned(look):
            self.since = None
            return self._back()
        if self.since is None:
            self.since = now
        if not self.away and now - self.since >= self.dim_after_s:
            self.away = True
            return [Event.OWNER_LOOKING_AWAY]
        return []

    def pace(self, interval: float, doubt_interval: float) -> float:
        """The sampling interval: while dimmed for looking away, the in-doubt pace, so that facing
        the screen again restores it within one short interval."""
        return min(interval, doubt_interval) if self.away else interval

    def _back(self) -> list[Event]:
        if not self.away:
            return []
        self.away = False
        return [Event.OWNER_LOOKING_BACK]
