"""Watching and steering a running session from another shell: ``acquire-vf status``,
``pause``, ``resume`` and ``stop`` against a real ``acquire-vf live`` (the demo camera flat
out) in a child process, over its control socket."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acquire_vf.storage import open_dataset
from tests._helpers import ROOT, reap, run_cli

pytestmark = pytest.mark.slow


def _wait(cond, what: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _status(out: Path) -> dict:
    r = run_cli("status", str(out), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_pause_resume_and_stop_steer_a_running_demo(tmp_path: Path,
                                                          plain_demo: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "acquire_vf", "live", "--profile", str(plain_demo), "--headless",
         "--out", str(out), "--time-points", "100000"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sock = out / ".control.sock"
        _wait(sock.exists, "the control socket", proc)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # the owner's only
        _wait(lambda: _status(out)["frames_acquired"] >= 10, "frames", proc)
        s = _status(out)
        assert s["state"] == "running" and s["frames_expected"] == 200000
        assert s["disk_free_gb"] > 0 and s["disk_needed_gb"] > 0 and s["time_left_s"] > 0
        table = run_cli("status", str(out), timeout=60)
        assert "frames" in table.stdout and "time left" in table.stdout, table.stdout

        twice = run_cli("live", "--profile", str(plain_demo), "--headless", "--out", str(out),
                        "--time-points", "2", timeout=120)  # a second session, same folder
        assert twice.returncode == 12 and "a session is running in this folder" in \
            twice.stderr, twice.stderr

        r = run_cli("pause", str(out), timeout=60)
        assert r.returncode == 0 and r.stdout.strip().endswith("paused"), r.stdout + r.stderr
        # frames already in flight arrive; then none: wait until the count holds still (as
        # long as this machine needs), then it must stay still for a second
        held, deadline = -1, time.monotonic() + 30
        while (now := _status(out)["frames_acquired"]) != held:
            assert time.monotonic() < deadline, "frames kept coming after pause"
            held = now
            time.sleep(0.3)
        time.sleep(1.0)
        assert _status(out)["frames_acquired"] == held and _status(out)["state"] == "paused"
        assert run_cli("resume", str(out), timeout=60).returncode == 0
        _wait(lambda: _status(out)["frames_acquired"] > held + 10, "frames after resume", proc)

        r = run_cli("stop", str(out), timeout=60)
        assert r.returncode == 0, r.stderr
        assert proc.wait(timeout=60) == 0  # asked for, everything saved: not an interruption
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        reap(proc)
    assert "stop asked from another shell" in err, err[-2000:]
    session = json.loads((out / "session.json").read_text())
    assert session["state"] == "cancelled" and session["stopped_by"] == "acquire-vf stop"
    (ds,) = open_dataset(out, repair_if_needed=False)
    assert ds.verify() == [] and len(ds.records) == session["frames_acquired"]
    assert not (out / ".control.sock").exists()  # gone with the session
    gone = run_cli("status", str(out), timeout=60)
    assert gone.returncode == 1 and "no session is running there" in gone.stderr, gone.stderr


def test_status_of_a_folder_with_no_session_is_one_clear_line(tmp_path: Path) -> None:
    r = run_cli("status", str(tmp_path), timeout=60)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no session is running there" in r.stderr
    r = run_cli("pause", str(tmp_path / "nowhere"), timeout=60)
    assert r.returncode == 1 and "no such run folder" in r.stderr, r.stderr
