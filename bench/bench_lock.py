"""The lock promise at its edges, timed through the real daemon with a test logind and test
screensavers on private buses (tests/desktop_helpers):

    .venv/bin/python bench/bench_lock.py [--rounds 5]

- a screensaver that dies while the session is locked: from its death to the next sample
  (target: sampling resumes within 2 s);
- a screensaver whose `Lock` locks and never replies (mate-screensaver 1.26): `facewarden lock`'s
  wall time and exit status, and how many lock calls each made (target: exit 0 within 3 s, one lock);
- a daemon stopped with SIGSTOP: a second `facewarden run` is refused (target: exit 2, one line),
  and the first answers again after SIGCONT.

Figures are medians and maxima over --rounds; the tests check the same behaviour without timing it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "daemon"), str(REPO / "tests"), str(Path(__file__).resolve().parent)]

from bench_daemon import owner_photos  # noqa: E402
from desktop_helpers.buses import desktop, drive, logind, system_bus  # noqa: E402
from desktop_helpers.procs import session_bus, wait_for  # noqa: E402
from facewarden.cli.demo import write_replay  # noqa: E402
from facewarden.service.control import request  # noqa: E402

PYTHON = [sys.executable, "-m", "facewarden"]
POLL_S = 0.01


def status(home: Path) -> dict:
    return request({"cmd": "status"}, home / "run" / "control.sock")


def start(home: Path, env: dict, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(PYTHON + ["run"], env=env, stderr=open(log, "a"), stdout=subprocess.DEVNULL)

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return status(home)["state"] == "owner_present"
        except Exception:
            return False

    wait_for(up, "the daemon and the owner", timeout=120)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(60)


def configure(home: Path, video: Path, methods: str) -> None:
    (home / "config.toml").write_text(f'[camera]\nsource = "{video}"\nreplay_loop = true\n[liveness]\nenabled = false\n'
                                      f'[lock]\nmethods = {methods}\n')


def vanishing_screensaver(home: Path, env: dict, log: Path, session: str, rounds: int) -> list[float]:
    """Seconds from the screensaver's death (while locked) to the next sample."""
    taken = []
    proc = start(home, env, log)
    try:
        for _ in range(rounds):
            with desktop(session, "org.freedesktop.ScreenSaver") as saver:
                wait_for(lambda: status(home)["locked"] is False, "the screensaver seen")
                drive(session, "org.freedesktop.ScreenSaver", "SetActive", "b", True)
                wait_for(lambda: status(home)["camera"] == "released (locked)", "the camera let go")
                samples = status(home)["samples"]
                saver.kill()
                died = time.monotonic()
                wait_for(lambda n=samples: status(home)["samples"] > n, "a sample after the death", every=POLL_S)
                taken.append(time.monotonic() - died)
                saver.wait()
    finally:
        stop(proc)
    return taken


def silent_lock(home: Path, env: dict, log: Path, session: str, rounds: int) -> list[tuple[float, int, int]]:
    """(seconds, exit status, lock calls) of `facewarden lock` against a Lock that never replies."""
    results = []
    with desktop(session, "--silent-lock", "org.mate.ScreenSaver"):
        proc = start(home, env, log)
        try:
            for _ in range(rounds):
                before = log.read_text().count("to lock (it sends no reply)")
                began = time.monotonic()
                done = subprocess.run(PYTHON + ["lock"], env=env, capture_output=True, text=True, timeout=60)
                results.append((time.monotonic() - began, done.returncode,
                                log.read_text().count("to lock (it sends no reply)") - before))
                drive(session, "org.mate.ScreenSaver", "SetActive", "b", False)
                wait_for(lambda: status(home)["locked"] is False, "unlocked")
        finally:
            stop(proc)
    return results


def stopped_daemon(home: Path, env: dict, log: Path) -> tuple[int, str, bool]:
    proc = start(home, env, log)
    try:
        proc.send_signal(signal.SIGSTOP)
        second = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=120)
        proc.send_signal(signal.SIGCONT)
        answers = status(home)["state"] in ("pending", "owner_present")
    finally:
        stop(proc)
    lines = [line for line in second.stderr.splitlines() if line.startswith("facewarden: ")]
    return second.returncode, lines[0] if len(lines) == 1 else second.stderr, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facewarden-lock-"))
    home, log = tmp / "home", tmp / "daemon.log"
    env = {**os.environ, "FACEWARDEN_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DISPLAY", None)
    _owner, photos = owner_photos(tmp / "enroll")
    for cmd in (["enroll", "--from", str(tmp / "enroll")], ["train"]):
        if subprocess.run(PYTHON + cmd, env=env, capture_output=True).returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed")
    frames = tmp / "frames"
    write_replay(frames, [("owner", 8, [[p] for p in photos])], 5)

    with ExitStack() as stack:
        system = stack.enter_context(system_bus(tmp))
        stack.enter_context(logind(system, tmp / "logind.jsonl"))
        (tmp / "session").mkdir()
        session = stack.enter_context(session_bus(tmp / "session"))
        env |= {"DBUS_SYSTEM_BUS_ADDRESS": system, "DBUS_SESSION_BUS_ADDRESS": session}
        configure(home, frames, '["screensaver"]')
        resumed = vanishing_screensaver(home, env, log, session, args.rounds)
        configure(home, frames, '["screensaver", "xdg-screensaver"]')
        locks = silent_lock(home, env, log, session, args.rounds)
        refused = stopped_daemon(home, env, log)

    def line(name: str, values: list[float], target: float) -> str:
        ok = max(values) <= target
        return (f"{name}: median {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)}"
                f" (target <= {target:g} s)  {'PASS' if ok else 'FAIL'}")

    print(line("screensaver died while locked -> next sample", resumed, 2.0))
    print(line("`facewarden lock`, a Lock that never replies", [t for t, _, _ in locks], 3.0))
    codes, calls = {c for _, c, _ in locks}, {n for _, _, n in locks}
    print(f"  exit status {sorted(codes)}, lock calls per lock {sorted(calls)} (target [0], [1])  "
          f"{'PASS' if codes == {0} and calls == {1} else 'FAIL'}")
    code, said, answers = refused
    print(f"second `run` while the first is stopped: exit {code}, {said!r}; the first answers after SIGCONT: "
          f"{answers}  {'PASS' if code == 2 and 'already running' in said and answers else 'FAIL'}")
    print(f"(daemon log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
