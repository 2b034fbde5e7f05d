"""The `facewarden` command. Parses arguments and calls into the modules; imports lazily so that
daemon-side commands never load TensorFlow."""

from __future__ import annotations

import argparse
import sys

from .errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewarden", description="Guards your session with your face.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each area registers its commands here: `sub.add_parser(...).set_defaults(func=...)`.
    _ = sub

    # The daemon and its control socket: service, control, eventlog, demo (none imports TensorFlow).
    def daemon_cmd(module: str, function: str):
        def handler(args):
            import importlib

            return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

        return handler

    sub.add_parser("run", help="run the daemon in the foreground (what the systemd unit starts)").set_defaults(
        func=daemon_cmd("service", "cli_run")
    )
    sub.add_parser("status", help="what the running daemon sees").set_defaults(func=daemon_cmd("control", "cli_status"))
    p = sub.add_parser("pause", help="stop watching for a while (e.g. 15m), or until resumed")
    p.add_argument("duration", nargs="?", help="30s, 15m, 1h, 2d; none: until `facewarden resume`")
    p.set_defaults(func=daemon_cmd("control", "cli_pause"))
    sub.add_parser("resume", help="watch again after a pause").set_defaults(func=daemon_cmd("control", "cli_resume"))
    sub.add_parser("lock", help="lock the session now").set_defaults(func=daemon_cmd("control", "cli_lock"))
    sub.add_parser("reload", help="re-read config.toml (a bad file keeps the old config)").set_defaults(
        func=daemon_cmd("control", "cli_reload")
    )
    p = sub.add_parser("events", help="what happened: the event log")
    p.add_argument("--since", metavar="DURATION", help="only the last 30s, 15m, 1h, 2d")
    p.set_defaults(func=daemon_cmd("eventlog", "cli_events"))
    sub.add_parser("demo", help="enroll a sample face and run the real daemon on a replayed sequence").set_defaults(
        func=daemon_cmd("demo", "cli_demo")
    )

    # Desktop integration (tray, desktop): pystray is imported only inside `tray`, it needs a display.
    sub.add_parser("tray", help="show the tray icon (a client of the running daemon)").set_defaults(
        func=daemon_cmd("tray", "run")
    )
    sub.add_parser("install", help="install the systemd user units and the default config").set_defaults(
        func=daemon_cmd("desktop", "install")
    )
    p = sub.add_parser("uninstall", help="remove the systemd user units (keeps config, enrollment, models)")
    p.add_argument("--purge", action="store_true", help="also delete config, enrollment, models, events and caches")
    p.set_defaults(func=daemon_cmd("desktop", "uninstall"))
    sub.add_parser("doctor", help="check camera, model, lock method, notifications, tray and unit").set_defaults(
        func=daemon_cmd("desktop", "doctor")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"facewarden: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
