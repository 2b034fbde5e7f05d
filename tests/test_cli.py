"""The command line's own contract: --version, and a command that does not exist."""

from __future__ import annotations

import subprocess

from support import PYTHON

import facewarden


def test_version():
    r = subprocess.run(PYTHON + ["--version"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, f"facewarden {facewarden.__version__}")


def test_unknown_command_is_a_usage_error():
    r = subprocess.run(PYTHON + ["frobnicate"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice: 'frobnicate'" in r.stderr and "Traceback" not in r.stderr
