"""The configuration: one pydantic model, the single source of truth.

The repo's `config.toml` is this model's documented default (a test keeps them equal). A user's
file only needs the keys it changes. Every error is reported at once, each with its key path.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from .errors import UserError
from .events import Action, Event
from .paths import write_private


# Upper bounds for durations: far above any sensible value, low enough that no clock overflows.
HOUR_S = 3600.0
DAY_S = 86400.0
MAX_WINDOW = 100  # presence: samples a decision may look back on


class Section(BaseModel):
    # No inf or NaN anywhere: `after_absent_s = inf` would mean "never lock".
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Source = int | str


class CameraConfig(Section):
    # A device index, a /dev/video* or /dev/v4l/by-id/... path, a video file, or a directory of
    # images played in order; or a list of them in order of preference. All go through OpenCV.
    source: Source | list[Source] = 0
    width: int = Field(640, gt=0, le=16384)
    height: int = Field(480, gt=0, le=16384)
    keep_open: bool = True
    replay_fps: float = Field(5.0, gt=0, le=1000)
    replay_loop: bool = False
    # Frames darker (mean grey, 0-255) or blurrier (variance of the Laplacian) are skipped, not judged.
    dark_threshold: float = Field(25.0, ge=0, le=255)
    blur_threshold: float = Field(8.0, ge=0, le=1e6)
    # Back-off between reopen attempts of a lost camera, doubling up to this.
    retry_max_s: float = Field(30.0, gt=0, le=HOUR_S)
    # While another program holds the camera (a video call): "idle" locks only after lock.idle_s
    # without input, "pause" never locks, "lock" fails closed.
    when_busy: Literal["idle", "pause", "lock"] = "idle"
    # The sources a closed lid blinds; empty: the devices sysfs calls built in.
    builtin: list[Source] = []

    @model_validator(mode="after")
    def _some_source(self) -> "CameraConfig":
        if self.source == []:
            raise ValueError("source must name at least one camera")
        return self

    @property
    def sources(self) -> list[Source]:
        return self.source if isinstance(self.source, list) else [self.source]


class SamplingConfig(Section):
    interval_s: float = Field(1.0, gt=0, le=HOUR_S)  # while the owner is verified
    doubt_interval_s: float = Field(0.25, gt=0, le=HOUR_S)  # a face not yet decided, a grace period running
    paused_interval_s: float = Field(5.0, gt=0, le=HOUR_S)
    # While the session is locked: "auto" watches only when something needs the camera then (the
    # unlock action, or an action or a hook on owner_arrived), "watch" always, "off" never.
    while_locked: Literal["auto", "watch", "off"] = "auto"
    locked_interval_s: float = Field(2.0, gt=0, le=HOUR_S)  # between samples while locked and watching
    # On battery (UPower's OnBattery) every interval is stretched by this factor; 1 = no change.
    battery_factor: float = Field(2.0, ge=1, le=100)
    # A verified face followed from sample to sample keeps its verdict without the model, at most
    # this long before the model judges it again (recognition/tracking.py)...
    reverify_s: float = Field(5.0, gt=0, le=HOUR_S)
    # ...and between full-frame scans only the region around it is searched; this often, also the
    # parts of the scene that changed around it (recognition/tracking.py's Scene).
    full_scan_s: float = Field(2.0, gt=0, le=HOUR_S)


class ModelConfig(Section):
    runtime: Literal["tflite", "h5"] = "tflite"
    # None: the threshold calibrated at training time (models/owner.json).
    threshold: float | None = Field(None, gt=0, le=1)  # <= 0 would take every face for the owner
    detect_width: int = Field(320, ge=80, le=16384)  # frames are downscaled to this width for detection
    min_detection_score: float = Field(0.6, gt=0, lt=1)
    # One: a second thread costs more CPU a day, and no longer shortens a new face's wait with the
    # model's int8 weights (bench_daemon, bench_speed).
    threads: int = Field(1, ge=1, le=256)


class PresenceConfig(Section):
    # Decisions use k of the last n frames. 100 frames is 25 s of doubt sampling: far above any
    # sensible window, and the owner is still verified (1e9 would never verify anyone).
    window: int = Field(5, ge=1, le=MAX_WINDOW)
    required: int = Field(3, ge=1, le=MAX_WINDOW)

    @model_validator(mode="after")
    def _k_of_n(self) -> "PresenceConfig":
        if self.required > self.window:
            raise ValueError("required must not exceed window")
        return self


LockMethod = Literal["command", "loginctl", "screensaver", "xdg-screensaver"]


class LockConfig(Section):
    after_absent_s: float = Field(10.0, gt=0, le=DAY_S)
    after_stranger_s: float = Field(2.0, ge=0, le=DAY_S)
    # With camera.when_busy = "idle": lock after this long without keyboard or mouse input.
    idle_s: float = Field(300.0, gt=0, le=DAY_S)
    command: list[str] = []  # argv, no shell; tried first when set
    methods: list[LockMethod] = ["command", "loginctl", "screensaver", "xdg-screensaver"]
    before_sleep: bool = True  # lock when logind announces sleep (as xss-lock does)
    # More screen lockers (names or absolute paths) whose running process means locked (service/lockers.py).
    lockers: list[Annotated[str, StringConstraints(min_length=1)]] = []
    # owner_leaving fires this long before the absence lock (its default action dims), at most half
    # of after_absent_s; 0: no warning.
    warn_s: float = Field(5.0, ge=0, le=DAY_S)
    # While an application holds an idle inhibitor (a film, a presentation) absence does not lock.
    pause_while_inhibited: bool = False


class OnlookerConfig(Section):
    enabled: bool = True
    # A second face counts only when it could read the screen: at least this wide relative to the
    # owner's face (as near as the owner, or nearly) and turned towards it (yaw, `core/onlooker.py`).
    min_relative_size: float = Field(0.6, gt=0, le=10)
    max_yaw: float = Field(0.3, ge=0, le=1)


class AttentionConfig(Section):
    # Dim while the verified owner looks away from the screen (never a lock).
    enabled: bool = True
    dim_after_s: float = Field(10.0, gt=0, le=DAY_S)
    # Head yaw (`core/onlooker.py`'s measure, 0 frontal) past which the owner is not facing the
    # screen: 0.45 is about 45 degrees, as Windows' presence sensing.
    max_yaw: float = Field(0.45, gt=0, le=1)
    # With more than one monitor connected the owner may be looking at the other one.
    with_monitors: bool = False


DimMethod = Literal["logind", "kde", "gnome", "xrandr"]


class DimConfig(Section):
    # The dimmed brightness, as a fraction of the brightness before.
    level: float = Field(0.3, gt=0, lt=1)
    methods: list[DimMethod] = ["logind", "kde", "gnome", "xrandr"]
    # Where the kernel's devices show (backlight/, drm/): another directory only for tests.
    sysfs: Path = Path("/sys/class")


_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
PERSON_NAME = f"^{_NAME}$"  # for pydantic, whose (Rust) `$` is the end of the text
OWNER = "owner"  # the person `enroll` takes without --person; enrolled in enroll/ itself
Role = Literal["owner", "trusted"]


def is_person_name(name: str) -> bool:
    """The one check of a person's name: a whole match (Python's `$` would let "bob\\n" through)."""
    return re.fullmatch(_NAME, name) is not None


class PeopleConfig(Section):
    # Enrolled people's roles: "owner" (their face keeps the session) or "trusted" (never an
    # onlooker or a stranger, but alone at the keyboard not an owner either). Not listed: the
    # default person "owner" is an owner, everyone else trusted.
    roles: dict[Annotated[str, StringConstraints(pattern=PERSON_NAME)], Role] = {}

    def role(self, person: str) -> Role:
        return self.roles.get(person, "owner" if person == OWNER else "trusted")


class LivenessConfig(Section):
    enabled: bool = True
    window_s: float = Field(20.0, gt=0, le=HOUR_S)
    model_path: Path | None = None  # optional MiniFASNet ONNX file the user supplies


class AdaptConfig(Section):
    # Templates that keep up with how enrolled people look now (core/adapt_track.py): off by default.
    enabled: bool = False


class SnapshotConfig(Section):
    enabled: bool = False
    keep: int = Field(20, ge=1, le=10_000)  # 10,000 snapshots of ~50 KB: 500 MB, the most a user could want


class HooksConfig(Section):
    timeout_s: float = Field(10.0, gt=0, le=DAY_S)


class LogConfig(Section):
    max_bytes: int = Field(1_000_000, ge=1024, le=1 << 30)
    keep: int = Field(3, ge=1, le=100)


DEFAULT_ACTIONS: dict[Event, list[Action]] = {
    Event.OWNER_LEAVING: [Action.DIM],
    Event.OWNER_STAYED: [Action.RESTORE],
    Event.OWNER_LEFT: [Action.LOCK],
    Event.OWNER_LOOKING_AWAY: [Action.DIM],
    Event.OWNER_LOOKING_BACK: [Action.RESTORE],
    # The lock screen blanks the display itself: the dim has done its work.
    Event.LOCKED: [Action.RESTORE],
    Event.ONLOOKER_GONE: [Action.RESTORE],
    Event.PAUSED: [Action.RESTORE],  # paused, nothing would take a dim back
    Event.STRANGER_DETECTED: [Action.SNAPSHOT, Action.LOCK],
    Event.ONLOOKER_DETECTED: [Action.SNAPSHOT, Action.NOTIFY],
    Event.SPOOF_SUSPECTED: [Action.NOTIFY, Action.LOCK],
    Event.CAMERA_LOST: [Action.NOTIFY],
}


class Config(Section):
    camera: CameraConfig = CameraConfig()
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig = ModelConfig()
    presence: PresenceConfig = PresenceConfig()
    lock: LockConfig = LockConfig()
    onlooker: OnlookerConfig = OnlookerConfig()
    attention: AttentionConfig = AttentionConfig()
    dim: DimConfig = DimConfig()
    people: PeopleConfig = PeopleConfig()
    adapt: AdaptConfig = AdaptConfig()
    liveness: LivenessConfig = LivenessConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    hooks: HooksConfig = HooksConfig()
    log: LogConfig = LogConfig()
    # Which built-in actions each event runs. User hooks (hooks/<event>) run for every event.
    actions: dict[Event, list[Action]] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    @field_validator("actions", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: object) -> object:
        """A user's [actions] table changes only the events it names (`[]` takes an event's actions
        away on purpose): naming onlooker_detected must not take the lock away from owner_left."""
        if not isinstance(value, dict):
            return value
        return {**{event.value: [a.value for a in acts] for event, acts in DEFAULT_ACTIONS.items()}, **value}

    @model_validator(mode="after")
    def _unlock_needs_liveness(self) -> "Config":
        if not self.liveness.enabled and any(Action.UNLOCK in a for a in self.actions.values()):
            raise ValueError("the unlock action needs liveness.enabled = true: a photo would unlock the session")
        return self

    @property
    def unlock_enabled(self) -> bool:
        return any(Action.UNLOCK in a for a in self.actions.values())


class ConfigError(UserError):
    pass


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {e['msg']}")
    return "\n".join(lines)


def parse(data: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None


def load(path: Path | None) -> Config:
    """The config at `path`; the defaults when `path` is None or does not exist."""
    if path is None or not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return parse(data, str(path))


def default_text() -> str:
    """The documented default config.toml, as shipped inside the package."""
    return resources.files(__package__).joinpath("data", "config.toml").read_text(encoding="utf-8")


def write_default(path: Path) -> Path:
    """The user's config file at `path`, written from the documented default only if there is none."""
    if not path.exists():
        write_private(path, default_text().encode("utf-8"))
    return path
