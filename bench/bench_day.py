"""A scripted desktop day through the real daemon, with a test logind on a private system bus.

    .venv/bin/python bench/bench_day.py [--minutes 10]

The replayed camera (a video file, so that /proc/PID/fd shows when the daemon holds it open) and the
session follow one script, scaled to --minutes (10 by default; times below are for 10):
  0:00 the owner works | 2:00 locks by hand (LockedHint) and leaves for 3 min | 5:00 back, 5:05
  unlocks | 5:40 leans back out of the picture for 7 s | 7:00 the laptop sleeps (PrepareForSleep) |
  7:30 wakes, 7:40 unlocks | 8:00 looks away for 15 s (LFW's one clearly turned photo of the owner,
  yaw 0.76; not without ../shared) | 9:00 walks away. The two episodes last the same at any --minutes
  (at least 5). The screen is a backlight directory that the test logind's SetBrightness writes.
The lock command records its call and, like a real locker, sets the session's LockedHint.
`sampling.while_locked = auto` with no owner_arrived action or hook: nothing needs the camera while
locked. Liveness is off (the frames are still photos).

Reports, against the issue's targets: seconds the camera was open while the session was locked (0),
CPU of one core while locked (< 0.1%), time from Unlock to the first sample (< one sampling interval),
false locks (0), lock latency after walking away (<= lock.after_absent_s + 2 s); the dims, how many
were not followed by a lock or a look-away, and the time from the owner's return (facing the screen
again) to the restored brightness (< 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "daemon"), str(REPO / "tests"), str(Path(__file__).resolve().parent)]

from bench_daemon import FACES, cpu_seconds, owner_photos  # noqa: E402
from desktop_helpers.buses import drive_logind, logind, system_bus  # noqa: E402
from facewarden.cli.demo import write_replay  # noqa: E402
from facewarden.config import Config  # noqa: E402
from facewarden.service.control import request  # noqa: E402

FPS = 5
POLL_S = 0.05
CPU_SETTLE_S = 5.0  # CPU while locked is measured from this long after the lock to the unlock
# (time in minutes of a 10-minute day, what happens)
SCRIPT = [(2.0, "lock by hand"), (5.0 + 5 / 60, "unlock"), (7.0, "sleep"), (7.5, "wake"), (7.0 + 40 / 60, "unlock")]
AWAY = (2.0, 5.0)  # the owner is away from the desk, in minutes of a 10-minute day
WALKS_AWAY = 9.0
LEANS_BACK, LEAN_S = 5 + 40 / 60, 7.0  # out of the picture for less than lock.after_absent_s
LOOKS_AWAY, LOOK_S = 8.0, 15.0  # turned from the screen for longer than attention.dim_after_s
TURNED = "Donald_Rumsfeld_0029.jpg"  # the bench owner's (owner_photos) one photo turned well past 45 degrees
FULL = 800


class Watch(threading.Thread):
    """Polls every POLL_S whether the daemon holds the camera file open (from /proc: no cost to the
    daemon), and asks its status every `status_every` polls (0: never, so as not to load what the
    CPU figure measures)."""

    def __init__(self, pid: int, video: Path, sock: Path):
        super().__init__(daemon=True)
        self.pid, self.video, self.sock = pid, str(video), sock
        self.samples: list[tuple[float, bool, dict | None]] = []  # (time, camera open, status)
        self.stop = threading.Event()
        self.status_every = 20

    def run(self) -> None:
        n = 0
        while not self.stop.wait(POLL_S):
            try:
                fds = {os.readlink(f) for f in Path(f"/proc/{self.pid}/fd").iterdir() if f.is_symlink()}
            except OSError:
                continue
            status = None
            n += 1
            if self.status_every and n % self.status_every == 0:
                try:
                    status = request({"cmd": "status"}, self.sock)
                except Exception:
                    pass
            self.samples.append((time.time(), self.video in fds, status))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the run's files (the daemon's log)")
    args = parser.parse_args()
    scale = args.minutes / 10 * 60  # seconds per minute of the script
    defaults = Config()
    interval, after_absent = defaults.sampling.interval_s, defaults.lock.after_absent_s

    tmp = Path(tempfile.mkdtemp(prefix="facewarden-day-"))
    home = tmp / "home"
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    env.pop("DISPLAY", None)
    python = [sys.executable, "-m", "facewarden"]
    owner, photos = owner_photos(tmp / "enroll")
    for cmd in (["enroll", "--from", str(tmp / "enroll")], ["train"]):
        result = subprocess.run(python + cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-2000:])
            return 1
    total = 10 * scale
    turned_path = FACES / "lfw-dev" / "Donald_Rumsfeld" / TURNED
    turned = [[cv2.imread(str(turned_path))]] if turned_path.is_file() and "LFW" in owner else None
    at = [[p] for p in photos]
    segments = [("owner", AWAY[0] * scale, at), ("away", (AWAY[1] - AWAY[0]) * scale, [[]]),
                ("back", (LEANS_BACK - AWAY[1]) * scale, at), ("leans back", LEAN_S, [[]]),
                ("back again", (LOOKS_AWAY - LEANS_BACK) * scale - LEAN_S, at),
                ("looks away", LOOK_S, turned or at), ("faces it", (WALKS_AWAY - LOOKS_AWAY) * scale - LOOK_S, at),
                ("gone", total - WALKS_AWAY * scale + 30, [[]])]
    if args.minutes < 5:
        sys.exit("--minutes must be at least 5: the episodes last the same at any length")
    starts = write_replay(tmp / "frames", segments, FPS)
    frames = sorted((tmp / "frames").glob("*.jpg"))
    first = cv2.imread(str(frames[0]))
    video = tmp / "day.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (first.shape[1], first.shape[0]))
    for f in frames:
        out.write(cv2.imread(str(f)))
    out.release()
    shutil.rmtree(tmp / "frames")

    locks = tmp / "locks.txt"
    lock = tmp / "lock"
    lock.write_text(f'#!/bin/sh\ndate +%s.%N >> "{locks}"\n'
                    "exec dbus-send --system --print-reply=literal --dest=org.freedesktop.login1 / "
                    "org.facewarden.Test.SetLocked boolean:true\n")
    lock.chmod(0o755)
    (home / "config.toml").write_text(f"""
[camera]
source = "{video}"
[liveness]
enabled = false
[lock]
command = ["{lock}"]
methods = ["command"]
[dim]
sysfs = "{tmp / 'sys'}"
methods = ["logind"]
""")
    panel = tmp / "sys" / "backlight" / "panel"
    panel.mkdir(parents=True)
    (panel / "max_brightness").write_text("1000\n")
    (panel / "brightness").write_text(f"{FULL}\n")

    with system_bus(tmp) as bus, logind(bus, tmp / "logind.jsonl", sysfs=tmp / "sys"):
        env |= {"DBUS_SYSTEM_BUS_ADDRESS": bus, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp / 'no-session-bus'}"}
        log = open(tmp / "daemon.log", "w")
        proc = subprocess.Popen(python + ["run"], env=env, stderr=log, stdout=subprocess.DEVNULL)
        sock = home / "run" / "control.sock"
        while True:
            try:
                request({"cmd": "status"}, sock)
                break
            except Exception:
                if proc.poll() is not None:
                    print((tmp / "daemon.log").read_text()[-3000:])
                    return 1
                time.sleep(0.2)
        watch = Watch(proc.pid, video, sock)
        watch.start()
        while "replay of" not in (text := (tmp / "daemon.log").read_text()):
            time.sleep(0.05)
        t0 = float(next(x for x in text.splitlines() if "replay of" in x).rsplit(" ", 1)[1])
        happened: dict[str, list[float]] = {}
        cpu_locked = None
        for minute, what in SCRIPT:
            while time.time() < t0 + minute * scale:
                time.sleep(0.01)
            happened.setdefault(what, []).append(time.time())
            if what == "lock by hand":
                drive_logind(bus, "SetLocked", "b", True)
                time.sleep(CPU_SETTLE_S)
                watch.status_every = 0
                cpu_locked = (time.time(), cpu_seconds(proc.pid))
            elif what == "unlock":
                if cpu_locked is not None and len(happened["unlock"]) == 1:
                    cpu_locked = (time.time() - cpu_locked[0], cpu_seconds(proc.pid) - cpu_locked[1])
                watch.status_every = 1  # every poll, to catch the first sample
                drive_logind(bus, "EmitUnlock")
                drive_logind(bus, "SetLocked", "b", False)
                threading.Timer(3.0, lambda: setattr(watch, "status_every", 20)).start()
            else:
                drive_logind(bus, "Sleep", "b", what == "sleep")
        while time.time() < t0 + total + after_absent + 5:
            time.sleep(0.1)
        watch.stop.set()
        watch.join()
        proc.terminate()
        code = proc.wait(60)
        log.close()
        record = [json.loads(line) for line in (tmp / "logind.jsonl").read_text().splitlines()]

    text = (tmp / "daemon.log").read_text()
    if code != 0 or "Traceback" in text:
        print(text[-3000:])
        print(f"daemon exited {code}")
        return 1

    # When the session was locked: from each SetLocked(true) to the next unlock, per the test logind.
    spans, since = [], None
    for r in record:
        if r["what"] != "call":
            continue
        if r["member"] == "SetLocked" and r["args"] == [True] and since is None:
            since = r["time"]
        elif r["member"] in ("EmitUnlock", "SetLocked") and r["args"] in ([], [False]) and since is not None:
            spans.append((since, r["time"]))
            since = None
    if since is not None:
        spans.append((since, time.time()))

    def locked_at(t: float) -> bool:
        return any(a <= t < b for a, b in spans)

    polls = watch.samples
    open_locked = sum(POLL_S for t, is_open, _ in polls if is_open and locked_at(t))
    reactions = []
    for a, b in spans:
        closed = next((t for t, is_open, _ in polls if a <= t < b and not is_open), None)
        reactions.append(None if closed is None else closed - a)
    samples_locked = 0
    for a, b in spans:
        inside = [s["samples"] for t, _, s in polls if s and a + 0.5 <= t < b]
        samples_locked += inside[-1] - inside[0] if inside else 0
    to_sample = []
    for u in happened["unlock"]:
        after = [s["sampled_at"] for t, _, s in polls if s and s["sampled_at"] and s["sampled_at"] > u]
        to_sample.append(min(after) - u if after else None)
    lock_times = [float(x) for x in locks.read_text().split()] if locks.exists() else []
    slept = happened["sleep"][0]
    walked = t0 + WALKS_AWAY * scale
    expected = [t for t in lock_times if slept <= t < slept + 5 or walked <= t]
    false_locks = len(lock_times) - len(expected)
    latency = next((t - walked for t in lock_times if t >= walked), None)
    cpu = cpu_locked[1] / cpu_locked[0] * 100 if cpu_locked else None

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(f"desktop day: {args.minutes:g} min through the real daemon, owner {owner}, video at {FPS} fps, "
          f"interval {interval:g} s, while_locked auto (no owner_arrived actions), {len(spans)} locked spans, "
          f"polled every {POLL_S * 1000:.0f} ms")
    print(f"camera open while locked : {open_locked:.2f} s (poll resolution; reaction to each lock: "
          f"{', '.join('-' if r is None else f'{r:.2f} s' for r in reactions)})  (target 0)  "
          f"{verdict(all(r is not None and r < interval for r in reactions))}")
    print(f"samples while locked     : {samples_locked} (from 0.5 s after each lock)  (target 0)  "
          f"{verdict(samples_locked == 0)}")
    print(f"CPU while locked         : {cpu:.3f} % of one core over {cpu_locked[0]:.0f} s (target < 0.1%)  "
          f"{verdict(cpu < 0.1)}" if cpu is not None else "CPU while locked: not measured")
    print(f"Unlock to first sample   : {', '.join('-' if s is None else f'{s:.2f} s' for s in to_sample)} "
          f"(target < {interval:g} s)  {verdict(all(s is not None and s < interval for s in to_sample))}")
    print(f"false locks              : {false_locks} of {len(lock_times)} locks (target 0)  "
          f"{verdict(false_locks == 0)}")
    print("lock latency, walked away: " + ("none" if latency is None else f"{latency:.2f} s") +
          f" (target <= {after_absent + 2:g} s)  {verdict(latency is not None and latency <= after_absent + 2)}")
    dims = [(r["time"], r["args"][2]) for r in record if r["what"] == "brightness"]
    dimmed = [t for t, v in dims if v < FULL]
    looked = (t0 + starts["looks away"], t0 + starts["faces it"])
    # A dim that neither a lock followed (before the next restore) nor a look-away explains: a warning
    # the owner made void by coming back in time (the lean-back), or a false alarm.
    needless = 0
    for t in dimmed:
        restored = next((u for u, v in dims if u > t and v == FULL), math.inf)
        locked = any(t <= lk <= restored for lk in lock_times)
        needless += not locked and not (looked[0] <= t <= looked[1] + 1)
    # (episode start, return): from the return to the restore, for an episode that dimmed at all
    episodes = [(t0 + starts["leans back"], t0 + starts["back again"])]
    episodes += [looked] if turned else []
    to_restore = [next((u - r for u, v in dims if u >= r and v == FULL), None)
                  if any(a <= t <= r for t in dimmed) else None for a, r in episodes]
    print(f"dims                     : {len(dimmed)}; not followed by a lock or a look-away: {needless} "
          f"(the lean-back's warning: 1 expected)")
    print(f"return to full brightness: {', '.join('no dim' if x is None else f'{x:.2f} s' for x in to_restore)} "
          f"(lean-back{', look-away' if turned else ''}; target < 0.5 s)  "
          f"{verdict(all(x is not None and x < 0.5 for x in to_restore))}"
          + ("" if turned else "   (no turned photo of the owner without ../shared: no look-away episode)"))
    events = [json.loads(line)["event"] for line in (home / "state" / "events.jsonl").read_text().splitlines()]
    print(f"events                   : {' '.join(events)}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
