"""The shared process supervisor (tools/procsup) with real, short-lived processes.

The test cloud and the Docker engine tool both start and stop their daemons through it;
these tests use `sleep` and small shells, so they need no daemon and take a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.procsup import procsup

PROCSUP = Path(procsup.__file__)
# A shell that ignores SIGTERM (as nova's conductor does) and has a child of its own.
STUBBORN = "trap '' TERM; sleep 60 & while :; do sleep 0.1; done"


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[procsup.Supervisor]:
    sup = procsup.Supervisor(tmp_path / "run", tmp_path / "log", str(tmp_path), "PROCSUP_TEST")
    yield sup
    sup.reap()


def env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"]}


def test_spawn_records_pid_log_and_marker(sup: procsup.Supervisor) -> None:
    pid = sup.spawn("talker", ["sh", "-c", "echo hello; exec sleep 60"], env())
    assert sup.pid("talker") == pid
    assert sup.pidfile("talker").read_text() == str(pid)
    sup.wait_ready("talker", lambda: "hello" in sup.logfile("talker").read_text(), 5)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"PROCSUP_TEST={sup.owner}".encode() in environ
    assert os.getsid(pid) == pid, "a session of its own"


def test_stop_terms_then_kills_what_ignores_it(sup: procsup.Supervisor) -> None:
    sup.spawn("polite", ["sleep", "60"], env())
    sup.spawn("stubborn", ["sh", "-c", STUBBORN], env())
    time.sleep(0.3)
    assert len(sup.owned()) >= 3
    t0 = time.monotonic()
    sup.stop(["polite", "stubborn"], grace=1.0)
    took = time.monotonic() - t0
    assert sup.owned() == []
    assert 1.0 <= took < 8.0
    assert not sup.pidfile("polite").exists()


def test_leader_only_waits_for_the_family_to_go(sup: procsup.Supervisor) -> None:
    # The leader ends its child itself on SIGTERM, as dockerd stops containerd.
    leader = "sleep 60 & child=$!; trap 'kill $child; wait $child; exit 0' TERM; wait"
    sup.spawn("leader", ["sh", "-c", leader], env())
    time.sleep(0.3)
    sup.stop(["leader"], grace=5.0, leader_only=True)
    assert sup.owned() == []


def test_wait_ready_fails_fast_when_the_daemon_dies(sup: procsup.Supervisor) -> None:
    sup.spawn("quitter", ["sh", "-c", "echo bye; exit 1"], env())
    with pytest.raises(procsup.DiedError, match="quitter exited during start-up"):
        sup.wait_ready("quitter", lambda: False, 10, name="quitter", log=sup.logfile("quitter"))
    with pytest.raises(procsup.ProcsupError, match="never not ready after 0 s"):
        sup.wait_ready("never", lambda: False, 0.3)


def test_kill_and_reap_end_only_our_processes(sup: procsup.Supervisor) -> None:
    sup.spawn("victim", ["sh", "-c", "sleep 60 & wait"], env())
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.3)
        assert sup.kill("victim")
        assert not sup.kill("victim")
        sup.spawn("orphaned", ["sleep", "60"], env())
        sup.pidfile("orphaned").unlink()
        assert sup.pid("orphaned") is None
        assert len(sup.reap()) == 1
        assert sup.owned() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_command_line_start_wait_pid_stop(tmp_path: Path) -> None:
    base = [sys.executable, str(PROCSUP), "--run-dir", str(tmp_path), "--owner", str(tmp_path)]
    flag = tmp_path / "ready"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, check=False)

    started = run(
        "start", "d", "--rotate-log", "--", "sh", "-c", f"sleep 0.3; touch {flag}; exec sleep 60"
    )
    assert started.returncode == 0, started.stderr
    assert run("wait", "d", "--timeout", "10", "--", "test", "-e", str(flag)).returncode == 0
    assert run("pid", "d").stdout.strip() == started.stdout.strip()
    assert run("stop", "d", "--grace", "5").returncode == 0
    assert run("pid", "d").returncode == 1
    assert run("pids").stdout.strip() == ""
    assert run("start", "d", "--rotate-log", "--", "sh", "-c", "exit 3").returncode == 0
    assert run("wait", "d", "--timeout", "10", "--", "false").returncode == 3
    assert (tmp_path / "d.log.1").exists()
