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
