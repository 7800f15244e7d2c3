"""Engines in their own process: the host's answers match the engine in this process; a killed
or hung host is detected, restarted and warmed up; during whole runs, a host killed at random
moments loses no raw frame and the run ends normally (real processes, real signals)."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from acquire_vf.config import Compute, demo_variant
from acquire_vf.engine_host import EngineHost, EngineHostFault
from acquire_vf.inference import create_engine
from tests.conftest import ROOT

ENGINE = ROOT / "engines" / "cps_dna.onnx"
FRAMES = [np.random.default_rng(0).integers(500, 900, (256, 256)).astype(np.uint16)] * 2


def _wait(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _host_pids() -> list[int]:
    """Engine host processes started by this test process (by name, as operators see them)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"acquire_vf.engine_host" in cmd and ppid == os.getpid():
            pids.append(int(d.name))
    return pids


def test_the_host_runs_the_engine_as_this_process_would_and_survives_a_kill() -> None:
    host = EngineHost(deadline_s=5.0, restarts=2)
    try:
        hosted = create_engine(ENGINE, Compute(), tile=128, overlap=16, host=host)
        local = create_engine(ENGINE, Compute(), tile=128, overlap=16)
        assert type(hosted.runner).__name__ == "HostedRunner" and hosted.backend == "onnxruntime"
        got, qc = hosted.infer(FRAMES)
        want, _ = local.infer(FRAMES)
        assert np.array_equal(got, want) and qc["finite"]
        assert _host_pids() == [host.pid]

        os.kill(host.pid, signal.SIGKILL)
        _wait(lambda: host.counts["crashes"] == 1)  # the heartbeat notices between calls
        with pytest.raises(EngineHostFault):
            hosted.infer(FRAMES)  # down, or restarting: the call does not run
        _wait(lambda: host.state == "up" and host.counts["restarts"] == 1)
        again, _ = hosted.infer(FRAMES)
        assert np.array_equal(again, want)  # reloaded and warmed up by the restart
        ours = hosted.runner._shm.name.lstrip("/")  # this runner's frame buffer
    finally:
        host.close()
    assert _host_pids() == []
    hosted.close()
    assert not (Path("/dev/shm") / ours).exists()  # unlinked: nothing of it left behind


def test_a_hung_host_is_killed_at_the_deadline_and_restarts_are_bounded() -> None:
    host = EngineHost(deadline_s=1.0, restarts=1)
    try:
        hosted = create_engine(ENGINE, Compute(), tile=128, overlap=16, host=host)
        hosted.infer(FRAMES)
        os.kill(host.pid, signal.SIGSTOP)  # alive but answering nothing
        t0 = time.monotonic()
        with pytest.raises(EngineHostFault, match="hung"):
            hosted.infer(FRAMES)
        assert time.monotonic() - t0 < 5.0
        _wait(lambda: host.state == "up")
        assert host.counts == {"restarts": 1, "crashes": 0, "hangs": 1}
        os.kill(host.pid, signal.SIGKILL)
        _wait(lambda: host.state == "failed")  # its one restart is spent
        with pytest.raises(EngineHostFault, match="restarts used"):
            hosted.infer(FRAMES)
        assert any("restarts used" in e for e in host.report()["events"])
    finally:
        host.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_killing_the_host_at_random_moments_loses_no_raw_frame(tmp_path: Path, seed: int
                                                              ) -> None:
    """A 60-time-point run on the in-memory backend; the engine host is killed twice at random
    moments. Every planned raw frame is saved, the run ends normally, DNA (``on_failure =
    "expose"``) is exposed while the host is down and virtual again after it is back."""
    from acquire_vf._session import run_session
    from acquire_vf.storage import open_dataset

    n = 60
    prof = demo_variant({
        "acquisition": {"time_points": n, "interval_s": 0.2},
        "verification": {"every": 1000, "at_start": False},
        "compute": {"host_deadline_s": 5.0},
        "virtual_channels": [v | ({"on_failure": "expose"} if v["name"] == "DNA" else {})
                             for v in demo_variant({}).model_dump(mode="json")[
                                 "virtual_channels"]]})
    rng = random.Random(seed)
    kills = sorted(rng.sample(range(6, 45), 2))  # after this many raw frames are journaled
    killed: list[int] = []
    journal = tmp_path / "run" / "acquisition.ome.tif.journal"

    def frames() -> int:
        try:
            return journal.read_text().count('"kind":"frame"')
        except OSError:
            return 0

    def killer() -> None:
        end = time.monotonic() + 60
        for at in kills:
            while frames() < at and time.monotonic() < end:
                time.sleep(0.01)
            for pid in _host_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(1.0)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    rep = run_session(prof, tmp_path / "run", quiet=True)
    t.join()
    assert killed, "the host was never seen"
    assert rep["state"] == "finished", rep["errors"]
    host = rep["engine_host"]
    assert host["mode"] == "process" and host["crashes"] >= 1 and host["restarts"] >= 1, host
    assert any("engine host crashed" in e for e in rep["errors"]), rep["errors"]
    (ds,) = open_dataset(tmp_path / "run")
    physical = {(r["t"], r["channel"]) for r in ds.records if r["role"] == "physical"
                and r["channel"] in ("AGP", "RNA", "BF")}
    assert physical == {(t_, c) for t_ in range(n) for c in ("AGP", "RNA", "BF")}
    dna_physical = [r["t"] for r in ds.records if (r["channel"], r["role"]) == ("DNA",
                                                                                "physical")]
    assert dna_physical, "DNA was never exposed while the host was down"
    virtual = [r["t"] for r in ds.records if (r["channel"], r["role"]) == ("DNA", "virtual")]
    assert virtual and max(virtual) > max(dna_physical), (dna_physical, virtual)
    assert rep["virtual_skipped"] > 0


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="the torch backend needs PyTorch (the train extra)")
def test_the_torch_backend_runs_live_in_the_host_never_beside_micro_manager(tmp_path: Path
                                                                           ) -> None:
    """A live run preferring PyTorch: the U-Net engines run on PyTorch in the engine host (the
    defocus estimator, not a U-Net, falls back to ONNX Runtime there), and this process (where
    Micro-Manager would run) never imports torch."""
    from acquire_vf._session import run_session

    already = "torch" in sys.modules
    prof = demo_variant({"acquisition": {"time_points": 3, "interval_s": 0.0},
                         "compute": {"backends": ["torch", "onnxruntime"],
                                     "allow_fallback": True}})
    rep = run_session(prof, tmp_path / "run", quiet=True)
    assert rep["state"] == "finished" and rep["virtual_frames"] > 0, rep["errors"]
    assert all(c.get("backend") == "torch" for c in rep["channels"] if c["role"] == "virtual")
    assert rep["engine_host"]["mode"] == "process" and rep["engine_host"]["crashes"] == 0
    if not already:
        assert "torch" not in sys.modules
