"""The `facewarden` command: the only layer that parses arguments, prints for people and sets exit
codes. Handlers live in this package (model, daemon_commands, desktop, demo); each imports what it needs
lazily, so that daemon-side commands never load TensorFlow."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..config import OWNER
from ..errors import UserError


def _lazy(module: str, function: str):
    """A handler that imports `module` only when its command runs: `facewarden status` must not pay
    for (or load) TensorFlow, and `tray` alone may touch the display."""

    def handler(args):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewarden", description="Guards your session with your face.")
    parser.add_argument("--version", action="version", version=f"facewarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The owner model (cli/model.py): only train, embed and evaluate import TensorFlow.

    p = sub.add_parser("enroll", help="add a person's face (the owner's by default): from the webcam or photos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="DIR",
                     help="import every photo with one clear face (a much smaller background face is ignored)")
    src.add_argument("--camera", action="store_true", help="capture from the webcam (camera.source)")
    p.add_argument("--count", type=int, default=20, help="faces to capture with --camera (default 20)")
    p.add_argument("--person", default=OWNER, metavar="NAME",
                   help="whose face (default: owner); their role is people.roles in config.toml")
    p.set_defaults(func=_lazy("model", "enroll"))
    sub.add_parser("people", help="who is enrolled: faces, adapted faces, role, when").set_defaults(
        func=_lazy("model", "people"))
    p = sub.add_parser("forget", help="delete every face kept of a person, enrolled and adapted (then `train` again)")
    p.add_argument("person", metavar="NAME")
    p.add_argument("--adapted", action="store_true",
                   help="delete only the faces adaptation kept (adapt.enabled), not the enrolled")
    p.set_defaults(func=_lazy("model", "forget"))
    p = sub.add_parser("model", help="the published model versions: history, rollback")
    versions = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    versions.add_parser("history", help="every model version, the current one starred").set_defaults(
        func=_lazy("model", "history"))
    p = versions.add_parser("rollback", help="make an earlier version current (default: the previous one)")
    p.add_argument("version", nargs="?", metavar="VERSION")
    p.set_defaults(func=_lazy("model", "rollback"))
    sub.add_parser("train", help="build the owner model from the enrollment").set_defaults(func=_lazy("model", "train"))
    p = sub.add_parser("score", help='one JSON line per image: {"path", "face", "score", "owner", "person"}')
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=_lazy("model", "score"))
    p = sub.add_parser("embed", help='one JSON line per image: {"path", "face", "embedding"}')
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=_lazy("model", "embed"))
    p = sub.add_parser("evaluate", help="face-pair accuracy, TAR at FAR, EER and a ROC plot (LFW pairs format)")
    p.add_argument("--pairs", required=True, metavar="FILE", help="LFW pairs file")
    p.add_argument("--images", required=True, metavar="DIR", help="DIR/name/name_0001.jpg ...")
    p.add_argument("--roc", default="roc.png", metavar="PNG", help="where to write the ROC plot (default roc.png)")
    p.set_defaults(func=_lazy("model", "evaluate"))

    # The daemon and its control socket (cli/daemon_commands.py, cli/demo.py): none imports TensorFlow.
    sub.add_parser("run", help="run the daemon in the foreground (what the systemd unit starts)").set_defaults(
        func=_lazy("daemon_commands", "run")
    )
    sub.add_parser("status", help="what the running daemon sees").set_defaults(func=_lazy("daemon_commands", "status"))
    p = sub.add_parser("pause", help="stop watching for a while (e.g. 15m), or until resumed")
    p.add_argument("duration", nargs="?", help="30s, 15m, 1h, 2d; none: until `facewarden resume`")
    p.set_defaults(func=_lazy("daemon_commands", "pause"))
    sub.add_parser("resume", help="watch again after a pause").set_defaults(func=_lazy("daemon_commands", "resume"))
    sub.add_parser("lock", help="lock the session now").set_defaults(func=_lazy("daemon_commands", "lock"))
    sub.add_parser("reload", help="re-read config.toml (a bad file keeps the old config)").set_defaults(
        func=_lazy("daemon_commands", "reload")
    )
    p = sub.add_parser("events", help="what happened: the event log")
    p.add_argument("--since", metavar="DURATION", help="only the last 30s, 15m, 1h, 2d")
    p.set_defaults(func=_lazy("daemon_commands", "events"))
    sub.add_parser("demo", help="enroll a sample face and run the real daemon on a replayed sequence").set_defaults(
        func=_lazy("demo", "run")
    )

    # Desktop integration (cli/desktop.py): pystray is imported only by the tray, it needs a display.
    sub.add_parser("tray", help="show the tray icon (a client of the running daemon)").set_defaults(
        func=_lazy("desktop", "tray")
    )
    sub.add_parser("install", help="install the systemd user units and the default config").set_defaults(
        func=_lazy("desktop", "install")
    )
    p = sub.add_parser("uninstall", help="remove the systemd user units (keeps config, enrollment, models)")
    p.add_argument("--purge", action="store_true", help="also delete config, enrollment, models, events and caches")
    p.set_defaults(func=_lazy("desktop", "uninstall"))
    sub.add_parser("doctor", help="check camera, model, lock method, notifications, tray and unit").set_defaults(
        func=_lazy("desktop", "doctor")
    )
    return parser


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that Python's last flush at exit has nowhere to fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (captured, closed): nothing will flush to it
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a full disk or a closed pipe can still be told
        return code
    except UserError as e:
        print(f"facewarden: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `facewarden status | head -1`: the reader has all it wanted
        _stdout_gone()
        return 0
    except OSError as e:  # `status > /dev/full`, a read-only or full disk: one line, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"facewarden: {e.strerror or e}{where}", file=sys.stderr)
        _stdout_gone()
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
