"""User hooks with real scripts: order, environment, failure isolation, timeout kill of the group."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facewarden.desktop import doctor
from support import alive
from facewarden.service.hooks import Runner, refused, scripts


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


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


# -- issue 23: a hook's descendants, however detached; hooks others can write -------------------------

DETACHES = """
( setsid sleep 300 >/dev/null 2>&1 & echo $! > "{pids}" ) &
wait
{then}
"""


def wait_dead(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def grandchild(pids: Path) -> int:
    deadline = time.monotonic() + 5
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(pids.read_text())


def test_a_double_forked_child_in_its_own_session_ends_with_the_hook(tmp_path):
    hooks, pids = tmp_path / "hooks", tmp_path / "pids"
    script(hooks / "owner_left", DETACHES.format(pids=pids, then="exit 0"))
    script(hooks / "locked", DETACHES.format(pids=tmp_path / "pids2", then="sleep 300"))
    try:
        assert [r.ok for r in Runner(hooks, 5).run("owner_left", {})] == [True]
        detached = grandchild(pids)
        assert wait_dead(detached), "the hook's detached grandchild outlived it"
        started = time.monotonic()
        timed = Runner(hooks, 1.0).run("locked", {})  # and when the hook times out
        assert timed[0].timed_out and time.monotonic() - started < 6
        assert wait_dead(grandchild(tmp_path / "pids2"))
    finally:
        for f in (pids, tmp_path / "pids2"):
            if f.exists() and f.read_text().strip() and alive(int(f.read_text())):
                os.kill(int(f.read_text()), signal.SIGKILL)


def test_a_hooks_detached_child_ends_when_the_daemon_is_killed(tmp_path):
    """The runner in a process of its own, SIGKILLed while its hook runs: nothing the hook started stays."""
    hooks, pids = tmp_path / "hooks", tmp_path / "pids"
    script(hooks / "paused", DETACHES.format(pids=pids, then="sleep 300"))
    daemon = subprocess.Popen([sys.executable, "-c", "import sys; from facewarden.service.hooks import Runner; "
                               f"Runner(__import__('pathlib').Path({str(hooks)!r}), 600).run('paused', {{}})"])
    try:
        detached = grandchild(pids)
        daemon.kill()
        daemon.wait()
        assert wait_dead(detached), "the hook's detached grandchild outlived the daemon"
    finally:
        daemon.kill()
        if alive(grandchild(pids)):
            os.kill(grandchild(pids), signal.SIGKILL)


def test_hooks_others_can_write_are_skipped_with_one_line_each(tmp_path, caplog):
    hooks, log = tmp_path / "hooks", tmp_path / "log"
    script(hooks / "owner_left", f'echo mine >> "{log}"')
    script(hooks / "owner_left.d" / "10-anyone-writes", f'echo 0777 >> "{log}"', mode=0o777)
    group_writable = script(tmp_path / "shared" / "theirs", f'echo linked >> "{log}"')
    (hooks / "owner_left.d" / "20-link").symlink_to(group_writable)
    group_writable.parent.chmod(0o775)  # the linked script's folder: anyone in the group may swap it
    script(hooks / "locked.d" / "1-fine", "exit 0")
    (hooks / "locked.d").chmod(0o777)  # a folder others can write: any hook could be put in it
    with caplog.at_level(logging.WARNING):
        results = Runner(hooks, 5).run("owner_left", {})
        assert Runner(hooks, 5).run("locked", {}) == []
    assert [r.script.name for r in results] == ["owner_left"] and log.read_text() == "mine\n"
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and all("chmod go-w" in line for line in skipped), skipped
    assert [p.name for p, _ in refused(hooks, ["owner_left", "locked"])] == ["10-anyone-writes", "20-link", "1-fine"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a hook to another user (nobody)")
def test_a_hook_another_user_owns_is_skipped_and_doctor_lists_it(tmp_path, caplog, monkeypatch):
    nobody = pwd.getpwnam("nobody").pw_uid
    monkeypatch.setenv("FACEWARDEN_HOME", str(tmp_path))
    hooks, log = tmp_path / "hooks", tmp_path / "log"
    theirs = script(hooks / "owner_left.d" / "10-nobody", f'echo nobody >> "{log}"')
    os.chown(theirs, nobody, -1)
    elsewhere = script(tmp_path / "other" / "script", f'echo linked >> "{log}"')
    os.chown(elsewhere, nobody, -1)
    (hooks / "owner_left.d" / "20-link").symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING):
        assert Runner(hooks, 5).run("owner_left", {}) == []
    assert not log.exists() and sum("skipped" in r.getMessage() for r in caplog.records) == 2
    check = doctor.check_hooks()
    assert not check.ok and "2 skipped" in check.text and f"uid {nobody}" in check.text, check.text
