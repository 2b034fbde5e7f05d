"""User hooks with real scripts: order, environment, failure isolation, timeout kill of the group."""

from __future__ import annotations

import os
import time
from pathlib import Path

from facewarden.service.hooks import Runner, scripts


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_order_and_selection(tmp_path):
    hooks = tmp_path / "hooks"
    log = tmp_path / "log"
    script(hooks / "owner_left", f'echo main >> "{log}"')
    script(hooks / "owner_left.d" / "20-b", f'echo b >> "{log}"')
    script(hooks / "owner_left.d" / "10-a", f'echo a >> "{log}"')
    script(hooks / "owner_left.d" / "15-not-executable", f'echo nx >> "{log}"', mode=0o644)
    script(hooks / "owner_left.d" / ".10-a.swp", f'echo swap >> "{log}"')
    script(hooks / "locked", f'echo other >> "{log}"')
    assert [p.name for p in scripts(hooks, "owner_left")] == ["owner_left", "10-a", "20-b"]
    results = Runner(hooks, 5).run("owner_left", {})
    assert [r.ok for r in results] == [True, True, True]
    assert log.read_text().split() == ["main", "a", "b"]


def test_environment_reaches_the_hook_without_a_shell(tmp_path):
    hooks = tmp_path / "hooks"
    out = tmp_path / "env"
    canary = tmp_path / "canary"
    script(hooks / "stranger_detected", f'env | grep ^FACEWARDEN_ | sort > "{out}"')
    env = {
        "FACEWARDEN_EVENT": "stranger_detected",
        "FACEWARDEN_TIME": "1700000000.5",
        "FACEWARDEN_SCORE": "0.12",
        "FACEWARDEN_FACES": "1",
        "FACEWARDEN_STATE": f"$(touch {canary})",
        "FACEWARDEN_FRAME": "/tmp/x.jpg",
    }
    Runner(hooks, 5).run("stranger_detected", env)
    got = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert {k: v for k, v in got.items() if k in env} == env
    assert not canary.exists()


def test_failures_are_isolated(tmp_path):
    hooks = tmp_path / "hooks"
    log = tmp_path / "log"
    script(hooks / "locked.d" / "1-fails", "exit 3")
    (hooks / "locked.d" / "2-no-shebang").write_text("echo hi\n")
    (hooks / "locked.d" / "2-no-shebang").chmod(0o755)
    (hooks / "locked.d" / "3-bad-interpreter").write_text("#!/nonexistent/sh\n")
    (hooks / "locked.d" / "3-bad-interpreter").chmod(0o755)
    script(hooks / "locked.d" / "4-runs", f'echo ran >> "{log}"')
    results = Runner(hooks, 5).run("locked", {})
    assert results[0].returncode == 3 and not results[0].ok
    assert results[1].error and results[2].error
    assert results[3].ok and log.read_text() == "ran\n"


def test_timeout_kills_the_whole_process_group(tmp_path):
    hooks = tmp_path / "hooks"
    pids = tmp_path / "pids"
    log = tmp_path / "log"
    # The hook starts a background child that ignores SIGTERM, then hangs.
    script(hooks / "paused.d" / "1-hangs", f"""
sh -c 'trap "" TERM; sleep 300' &
echo $! > "{pids}"
echo $$ >> "{pids}"
sleep 300
""")
    script(hooks / "paused.d" / "2-after", f'echo after >> "{log}"')
    results = Runner(hooks, 1.0).run("paused", {})
    assert results[0].timed_out and results[0].returncode is None
    assert results[1].ok and log.read_text() == "after\n"
    child, leader = (int(x) for x in pids.read_text().split())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child) and not alive(leader)


def test_kill_running_ends_a_hook_at_shutdown(tmp_path):
    import threading

    hooks = tmp_path / "hooks"
    script(hooks / "paused", "sleep 300")
    runner = Runner(hooks, 600)
    results = []
    thread = threading.Thread(target=lambda: results.extend(runner.run("paused", {})))
    thread.start()
    while runner._running is None:
        time.sleep(0.01)
    runner.kill_running()
    thread.join(10)
    assert not thread.is_alive() and results[0].returncode is not None and not results[0].ok


def test_no_hooks_dir_is_fine(tmp_path):
    assert Runner(tmp_path / "missing", 1).run("owner_left", {}) == []
