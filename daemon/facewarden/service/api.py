"""The control API the socket serves (service/control.py): status, pause, resume, lock now, reload.

Each request runs on its control connection's thread; whatever it changes goes into the guard as an
input through the daemon, like everything else.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from .. import config as config_module
from ..config import Config
from ..core.attention import turning
from ..core.guard import Guard, Input, Pause, Resume
from ..core.onlooker import Reach
from ..errors import UserError
from ..events import Event
from ..paths import Paths
from ..recognition import ownerfile
from .camera import Cameras
from .fanout import Fanout
from .sampler import ModelFollower, Observer, Sampler, Watchdog, build_liveness, verifier_settings
from .session import Session
from .surroundings import Surroundings

log = logging.getLogger("facewarden")


class Daemon(Protocol):
    """What the API needs of the daemon (service/daemon.py)."""

    config: Config
    paths: Paths
    clock: Callable[[], float]
    mutex: threading.RLock
    guard: Guard
    session: Session
    model: ModelFollower
    sampler: Sampler
    fanout: Fanout
    watchdog: Watchdog
    surroundings: Surroundings

    def feed(self, what: Input) -> list[Event] | None: ...
    def busy_by(self) -> str | None: ...
    def liveness_reason(self) -> str: ...
    def cameras(self, config: Config) -> Cameras: ...
    def reach(self, config: Config) -> Reach: ...
    def watches_while_locked(self) -> bool: ...
    def pace(self, kick: bool = False) -> None: ...
    def warn_unlock(self) -> None: ...


class Api:
    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def status(self) -> dict:
        d = self.daemon
        idle_s = d.session.idle_seconds()  # a bus call: not holding the lock
        with d.mutex:
            guard, p, cam = d.guard, d.guard.presence, d.sampler.camera
            # Busy is the cameras' word, at once (the watcher's thread sets it); lost is the guard's.
            in_use = cam.in_use if cam.in_use is not None and not cam.in_use.held_by else None
            busy = None if in_use else d.busy_by()
            camera = guard.camera
            if guard.wants_camera:
                camera = "ok" if in_use else "busy" if busy else camera
            return {
                "state": p.state.value, "since": p.since, "paused_until": p.paused_until,
                "locked": guard.locked, "locked_by": guard.locked_by, "session_locked": guard.session_locked,
                "locked_via": guard.locked_via, "lock_confirmed": guard.session_locked or not guard.locked,
                "logind": d.session.logind.reachable,
                "camera": camera, "camera_busy_by": busy,
                "camera_in_use": None if in_use is None else str(in_use.source),
                "faces": p.last.faces, "score": p.last.score,
                "person": p.last.person, "model": d.model.version,
                "sampling": guard.sampling_word, "samples": d.sampler.samples, "sampled_at": d.sampler.sampled_at,
                "idle_s": idle_s, "idle_source": None if d.session.idle is None else d.session.idle.name,
                "liveness": d.liveness_reason(),
                "on_battery": d.surroundings.on_battery, "interval_factor": guard.interval_factor,
                "warning": guard.warning, "dimmed": (d.fanout.actions.dimmer.state() or {}).get("reasons", []),
            }

    def pause(self, seconds: float | None) -> dict:
        d = self.daemon
        d.feed(Pause(None if seconds is None else d.clock() + seconds))
        return {"ok": True, **self.status()}

    def resume(self) -> dict:
        self.daemon.feed(Resume())
        return {"ok": True, **self.status()}

    def lock_now(self) -> dict:
        # The caller waits for the verdict of the lock sequence.
        if not self.daemon.fanout.lock():
            return {"ok": False, "error": "no lock method worked (see the daemon's log)"}
        return {"ok": True, **self.status()}

    def reload(self) -> dict:
        """Re-read config.toml and switch to the newest published model; a bad file (or a camera or
        model it cannot open) keeps the old config and model."""
        d = self.daemon
        try:
            new = config_module.load(d.paths.config_file)
            with d.mutex:
                # Loading a model holds up samples for a while (TensorFlow for "h5"): not a hang.
                d.watchdog.hold()
                sampler, model = d.sampler, d.model
                camera = sampler.camera if new.camera == d.config.camera else d.cameras(new)
                version = ownerfile.current_version(d.paths)
                model.config = new
                verify = sampler.observer.verify
                if verifier_settings(new) != verifier_settings(d.config) or version != model.version:
                    verify = model.load()
                liveness = sampler.observer.liveness
                if new.liveness != d.config.liveness:
                    liveness = build_liveness(new)
                if camera is not sampler.camera:
                    sampler.retired.append(sampler.camera)  # only the sampling step touches a camera
                sampler.camera, sampler.config = camera, new
                sampler.observer = Observer(verify, liveness, d.reach(new), turning(new))
                model.version, model.refused = version, None
                d.config = new
                d.guard.configure(new, d.watches_while_locked())
                d.surroundings.sysfs = new.dim.sysfs
                d.fanout.configure(new)
                d.pace(kick=True)
        except UserError as e:
            log.error("reload refused, the old config stays: %s", e)
            return {"ok": False, "error": f"reload refused, the old config stays: {e}"}
        finally:
            d.watchdog.fed()
        log.info("config reloaded from %s (owner model %s)", d.paths.config_file, d.model.version)
        d.warn_unlock()
        return {"ok": True, **self.status()}
