"""`facewarden demo`: the real daemon on a replayed image sequence, on a machine without a webcam.

Everything lives in a temporary FACEWARDEN_HOME. The owner is scikit-image's public-domain astronaut
photo, enrolled from augmented copies and trained with the real `enroll` and `train` commands. The
daemon (`facewarden run`, a separate process, as systemd would start it) then watches a replayed
sequence: the owner, an empty scene (owner_left, and the lock chain runs a hook that prints instead
of locking this machine), the owner again. Hooks print each event as it happens.

Liveness is switched off for the demo, and it says so: the "owner" is a still photo, which the
liveness check exists to refuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..core.observation import Face
from ..errors import UserError
from ..events import Event
from ..recognition.vision import Detector, nearest_centre

# The demo's hooks ship inside the package (a wheel has no source tree).
DEMO_HOOKS = resources.files("facewarden").joinpath("data", "hooks")
FPS = 5
SIZE = (640, 480)
# The timeline, in seconds of replay: owner, nobody, owner.
OWNER_S, EMPTY_S, RETURN_S = 4, 8, 4
AFTER_ABSENT_S = 4.0
DAEMON_TIMEOUT_S = 120


def _astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _empty_scene() -> np.ndarray:
    from skimage import data

    # A cup of coffee on a table: a well-lit frame with texture and no face in it.
    return cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), SIZE)


def augmented(image: np.ndarray, count: int, seed: int = 7) -> list[np.ndarray]:
    """Copies of `image` as a webcam might see the same person: shifted, scaled, turned, lit differently."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out = []
    for i in range(count):
        angle = rng.uniform(-8, 8)
        scale = rng.uniform(0.85, 1.1)
        matrix = cv2.getRotationMatrix2D((w / 2 + rng.uniform(-20, 20), h / 2 + rng.uniform(-20, 20)), angle, scale)
        img = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        img = cv2.convertScaleAbs(img, alpha=rng.uniform(0.75, 1.2), beta=rng.uniform(-20, 20))
        if i % 2:
            img = cv2.flip(img, 1)
        if i % 3 == 2:
            img = cv2.GaussianBlur(img, (3, 3), 0)
        out.append(img)
    return out


def compose(faces: list[np.ndarray], background: np.ndarray, dx: int = 0) -> np.ndarray:
    """A 640x480 frame with the given face photos side by side on `background` (an onlooker frame
    is the owner's photo and someone else's), each as tall as fits."""
    frame = background.copy()
    slot = SIZE[0] // len(faces)
    for i, image in enumerate(faces):
        h, w = image.shape[:2]
        scale = min(SIZE[1] / h, slot / w) * 0.95
        small = cv2.resize(image, (int(w * scale), int(h * scale)))
        x = min(max(0, i * slot + (slot - small.shape[1]) // 2 + dx), SIZE[0] - small.shape[1])
        y = (SIZE[1] - small.shape[0]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def in_place_of(frame: np.ndarray, face: Face, image: np.ndarray, detector: Detector) -> np.ndarray | None:
    """`frame` with the face of `image` (the one nearest its centre) put exactly where `face` is, its
    eyes, nose and mouth on the same points, the rest of the frame unchanged: someone who took the
    place of `face` between two samples. None when `image` shows no face."""
    theirs = nearest_centre(detector(image), image.shape)
    if theirs is None:
        return None
    matrix = cv2.estimateAffinePartial2D(theirs.landmarks, face.landmarks)[0]
    warped = cv2.warpAffine(image, matrix, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    x, y, w, h = face.box
    top, left = max(0, int(y - 0.3 * h)), max(0, int(x - 0.2 * w))
    bottom, right = int(y + 1.2 * h), int(x + 1.2 * w)
    out = frame.copy()
    out[top:bottom, left:right] = warped[top:bottom, left:right]
    return out


BROKEN = b"not an image"  # a frame the camera cannot decode: a camera failure mid-run


def write_replay(folder: Path, segments: list[tuple[str, float, list]], fps: float = FPS,
                 seed: int = 3) -> dict[str, float]:
    """Numbered frames for a replayed camera: each segment (name, seconds, choices) cycles through
    `choices`, lists of face photos to compose (empty list: nobody; None: a broken frame), with the
    small shifts and sensor noise of a live camera. Returns when each segment starts, in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    background = _empty_scene()
    index, starts = 0, {}
    for name, seconds, choices in segments:
        starts[name] = index / fps
        for n in range(round(seconds * fps)):
            faces = choices[n % len(choices)]
            path = folder / f"{index:05d}.jpg"
            index += 1
            if faces is None:
                path.write_bytes(BROKEN)
                continue
            frame = compose(faces, background, int(rng.integers(-6, 7))) if faces else background
            noise = rng.normal(0, 3, frame.shape)
            cv2.imwrite(str(path), np.clip(frame + noise, 0, 255).astype(np.uint8))
    starts["end"] = index / fps
    return starts


def demo_config(frames: Path, lock_hook: Path) -> str:
    actions: dict[str, list[str]] = {e.value: [] for e in Event}
    actions["owner_left"] = ["lock"]
    actions["stranger_detected"] = ["lock"]
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in actions.items())
    return f"""# Written by `facewarden demo`.
[camera]
source = "{frames}"
replay_fps = {FPS}

[lock]
after_absent_s = {AFTER_ABSENT_S}
# The lock chain runs for real, but its only method is the demo hook that prints instead.
command = ["{lock_hook}"]
methods = ["command"]

[liveness]
# Off for the demo only: the owner here is a still photo, which liveness exists to refuse.
enabled = false

[actions]
# No desktop notifications from the demo.
{lines}
"""


def _run(argv: list[str], env: dict, what: str) -> None:
    print(f"[demo] {what}: {' '.join(argv[2:])}", flush=True)
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise UserError(f"demo: `{' '.join(argv[2:])}` failed (exit {result.returncode}):\n{result.stdout.strip()}")


def _follow(daemon: subprocess.Popen, log_file: Path) -> int:
    """Wait for the daemon (at most DAEMON_TIMEOUT_S), printing what its hooks print as it logs it:
    the daemon captures hooks' output and puts (the tail of) it in its log line for the hook."""
    from ..service.hooks import OUTPUT

    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    pending = ""
    with open(log_file, encoding="utf-8", errors="replace") as log:
        while True:
            code = daemon.poll()
            pending += log.read()
            *lines, pending = pending.split("\n")
            for line in lines:
                if OUTPUT in line:
                    print(line.split(OUTPUT, 1)[1], flush=True)
            if code is not None:
                return code
            if time.monotonic() > deadline:
                daemon.terminate()
                daemon.wait()
                return -1
            time.sleep(0.1)


def _copy_hook(name: str, target: Path) -> None:
    target.write_bytes(DEMO_HOOKS.joinpath(name).read_bytes())
    target.chmod(0o700)


def install_hooks(home: Path) -> Path:
    """The demo's hooks under `home`: print-event for every event, and the printing lock command."""
    hooks = home / "hooks"
    for event in Event:
        folder = hooks / f"{event.value}.d"
        folder.mkdir(parents=True, exist_ok=True)
        _copy_hook("print-event", folder / "50-print-event")
    lock_hook = hooks / "demo-lock"
    _copy_hook("demo-lock", lock_hook)
    return lock_hook


def run(args) -> int:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="facewarden-demo-"))
    env = {**os.environ, "FACEWARDEN_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    python = [sys.executable, "-m", "facewarden"]
    try:
        print(f"[demo] FACEWARDEN_HOME={home} (removed at the end)")
        print("[demo] liveness is OFF for this demo: the owner is a still photo (scikit-image's astronaut),")
        print("[demo]   and refusing photos is exactly what liveness is for. Keep it on for real use.")
        owner = _astronaut()
        enroll_src = home / "demo-enroll"
        enroll_src.mkdir()
        for i, img in enumerate(augmented(owner, 12)):
            cv2.imwrite(str(enroll_src / f"astronaut-{i:02d}.jpg"), img)
        _run(python + ["enroll", "--from", str(enroll_src)], env, "enrolling the owner from 12 augmented photos")
        _run(python + ["train"], env, "training the owner model")

        frames = home / "demo-frames"
        starts = write_replay(frames, [("owner", OWNER_S, [[owner]]), ("empty", EMPTY_S, [[]]),
                                       ("owner again", RETURN_S, [[owner]])])
        lock_hook = install_hooks(home)
        (home / "config.toml").write_text(demo_config(frames, lock_hook))
        print(f"[demo] replaying {OWNER_S} s of the owner, {EMPTY_S} s of an empty desk (lock after "
              f"{AFTER_ABSENT_S:g} s), then {RETURN_S} s of the owner again; events as they happen:", flush=True)
        log_file = home / "daemon.log"
        with open(log_file, "w") as log:
            daemon = subprocess.Popen(python + ["run"], env=env, stdout=None, stderr=log)
            code = _follow(daemon, log_file)
        if code != 0:
            raise UserError(f"demo: the daemon exited with {code}; its log:\n{log_file.read_text()[-3000:]}")
        print(f"[demo] replay over (the owner left at {starts['empty']:g} s and came back at "
              f"{starts['owner again']:g} s); the event log, as `facewarden events` shows it:", flush=True)
        subprocess.run(python + ["events"], env=env, check=False)
        print(f"[demo] done in {time.monotonic() - started:.0f} s")
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)
