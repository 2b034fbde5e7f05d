"""The daemon's commands: run it, and talk to it over the control socket (status, pause, resume,
lock, reload), and read what it logged (events). None of them imports TensorFlow."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from datetime import datetime, timezone

from .. import config as config_module
from ..errors import UserError
from ..paths import paths
from ..service import control, eventlog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1.5h', '2d' -> seconds (at most a year: beyond, clocks overflow)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"not a duration: {text!r} (try 30s, 15m, 1h or 2d)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > control.MAX_PAUSE_S:
        raise UserError(f"too long a duration: {text!r} (at most 366d)")
    return seconds


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_record(record: dict) -> str:
    keys = ("state", "person", "faces", "score", "detail", "frame", "locked_by")
    extra = [f"{k}={record[k]}" for k in keys if record.get(k) is not None]
    return f"{iso(record['time'])}  {record['event']:<18} " + " ".join(extra)


def _ago(t: float) -> str:
    seconds = max(0, int(time.time() - t))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_status(status: dict) -> str:
    lines = [f"state:   {status['state']} (for {_ago(status['since'])})"]
    if status["state"] == "paused":
        until = status.get("paused_until")
        lines.append("paused:  until " + (time.strftime("%H:%M:%S", time.localtime(until)) if until else "resumed"))
    locked = "no"
    if status.get("session_locked"):
        locked = f"yes (the session says so: {status['locked_via']})"
    elif status["locked"]:
        locked = "yes (by facewarden, unconfirmed: nothing here reports the session's lock)"
    lines.append(f"locked:  {locked}")
    if status.get("sampling") not in (None, "on"):
        lines.append(f"sampling: {status['sampling']}")
    camera = status["camera"]
    if status.get("camera_busy_by"):
        camera += f" (held by {status['camera_busy_by']})"
    elif status.get("camera_in_use"):
        camera += f" ({status['camera_in_use']})"
    lines.append(f"camera:  {camera}")
    if status.get("model"):
        lines.append(f"model:   {status['model']}")
    score = status.get("score")
    lines.append(f"faces:   {status['faces']}" + (f" (best owner score {score:.2f})" if score is not None else ""))
    if status.get("person"):
        lines.append(f"person:  {status['person']}")
    if status.get("idle_source"):
        idle = status.get("idle_s")
        lines.append("idle:    " + ("unknown" if idle is None else f"{idle:.0f} s") + f" ({status['idle_source']})")
    if "liveness" in status:
        lines.append(f"liveness: {status['liveness']}")
    if status.get("on_battery"):
        lines.append(f"power:   on battery: sampling intervals x{status.get('interval_factor', 1):g}")
    if status.get("dimmed"):
        lines.append(f"dimmed:  by facewarden ({', '.join(status['dimmed'])})")
    return "\n".join(lines)


def _checked(response: dict) -> dict:
    if not response.get("ok"):
        raise UserError(response.get("error", "the daemon refused"))
    return response


def run(args) -> int:
    from ..service.daemon import Daemon

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # One line per sample would flood the journal; the scheduler's warnings still get through.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    where = paths()
    config = config_module.load(where.config_file)
    # Before anything is loaded: a second daemon says so at once, even while the first is stopped.
    daemon = Daemon(config, where, lock=control.one_daemon(where.socket_path))
    code = daemon.run()
    if daemon.stuck:
        # A thread hung in a camera read would keep the interpreter from exiting (it joins them).
        logging.shutdown()
        os._exit(code)
    return code


def status(args) -> int:
    print(format_status(_checked(control.ask({"cmd": "status"}))))
    return 0


def pause(args) -> int:
    seconds = parse_duration(args.duration) if args.duration else None
    print(format_status(_checked(control.ask({"cmd": "pause", "seconds": seconds}))))
    return 0


def resume(args) -> int:
    print(format_status(_checked(control.ask({"cmd": "resume"}))))
    return 0


def lock(args) -> int:
    _checked(control.ask({"cmd": "lock-now"}))
    print("locked")
    return 0


def reload(args) -> int:
    model = _checked(control.ask({"cmd": "reload"})).get("model")
    print(f"config reloaded; owner model {model or '(the one in models/, from before versions)'}")
    return 0


def events(args) -> int:
    since = time.time() - parse_duration(args.since) if args.since else None
    records, skipped = eventlog.read_counted(paths().events_file, since)
    for record in records:
        print(format_record(record))
    if skipped:
        print(f"facewarden: skipped {skipped} unreadable line(s) in {paths().events_file}", file=sys.stderr)
    return 0
