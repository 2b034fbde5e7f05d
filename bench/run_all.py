"""`make bench`: every benchmark in turn, each printing its own figures against its targets.

Run them on an otherwise idle machine: they report medians, and peers are measured in the same
run so that load hits both sides alike, but a busy machine still inflates every absolute figure.
`--quick` shortens the daemon runs to 2 minutes (their CPU shares are then less settled).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    runs = [
        ["bench_speed.py"],
        ["bench_accuracy.py"],
        ["bench_liveness.py"],
        ["bench_daemon.py", "--minutes", "2" if quick else "10"],
        ["bench_day.py", "--minutes", "2" if quick else "10"],
        ["bench_lock.py"],
        ["bench_reopen.py"],
        ["bench_surroundings.py", "--seconds", "10" if quick else "60"],
    ]
    failed = []
    for script, *args in runs:
        print(f"\n=== {script} {' '.join(args)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
