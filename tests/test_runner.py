"""The run loop's behaviour on the in-memory backend: no Micro-Manager, a frame in milliseconds.

What needs Micro-Manager itself (sequence mode, buffer overflow, stage restore, the demo
camera) stays in ``test_acquisition.py``; everything about states, gaps, grouping, fallback,
cancel and plans is here, table-driven.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import useq

from acquire_vf._errors import ProfileError
from acquire_vf._frames import Frame, FrameId
from acquire_vf._session import make_run
from acquire_vf.acquisition import (
    AcquisitionRun,
    RunState,
    build_plan,
    dataset_layout,
    profile_sequence,
    session_report,
)
from acquire_vf.backends import RunEvent, event_channel, event_kind, open_backend
from acquire_vf.config import Profile
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile, verified_profile
from tests.stages import CopyStage, Tampering

S = RunState


def mem_profile(**updates: Any) -> Profile:
    """The demo profile on the in-memory backend, 96 x 96 frames."""
    conn = {"kind": "memory", "shape": [96, 96]}
    conn.update(updates.pop("connection", {}))
    return make_profile(connection=conn, **updates)


def _run(profile: Profile, out: Path, stages: list | None = None, **kw: Any) -> AcquisitionRun:
    run = make_run(profile, out, stages=[] if stages is None else stages, **kw)
    run.run()
    return run


def _wait(cond, timeout: float = 20.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.005)


def _records(out: Path) -> list[dict]:
    files = open_dataset(out)
    assert all(f.verify() == [] for f in files)
    return [r for f in files for r in f.records]


# ----- states --------------------------------------------------------------------------------

def _pause_resume_cancel(run: AcquisitionRun) -> None:
    _wait(lambda: run.frames_acquired >= 5)
    run.pause()
    time.sleep(0.1)  # the frame in flight lands
    held = run.frames_acquired
    time.sleep(0.3)
    assert run.frames_acquired == held, "frames kept arriving while paused"
    assert run.status().state is S.PAUSED
    run.resume()
    _wait(lambda: run.frames_acquired >= held + 5)
    run.cancel()


def _pause_cancel(run: AcquisitionRun) -> None:
    _wait(lambda: run.frames_acquired >= 5)
    run.pause()
    time.sleep(0.1)
    run.cancel()


@pytest.mark.parametrize("action, states, end", [
    (None, [S.RUNNING, S.FINISHED], S.FINISHED),
    ("before", [S.RUNNING, S.CANCELLING, S.CANCELLED], S.CANCELLED),
    (_pause_resume_cancel, [S.RUNNING, S.PAUSED, S.RUNNING, S.CANCELLING, S.CANCELLED],
     S.CANCELLED),
    (_pause_cancel, [S.RUNNING, S.PAUSED, S.CANCELLING, S.CANCELLED], S.CANCELLED),
    ("fail", [S.RUNNING, S.FAILED], S.FAILED),
], ids=["finish", "cancel-before-start", "pause-resume-cancel", "cancel-while-paused",
        "hardware-failure"])
def test_run_state_transitions(tmp_path: Path, action, states, end) -> None:
    n_t = 5 if action in (None, "fail") else 2000
    prof = mem_profile(connection={"exposure_time": True}, acquisition={"time_points": n_t},
                       faults={"stop_after": 3, "backoff_s": 0.0})  # a dead camera stops it
    run = make_run(prof, tmp_path, stages=[])
    seen: list[RunState] = []
    run.signals.stateChanged.connect(seen.append)
    if action == "before":
        run.cancel()
    if action == "fail":
        run.backend.fail_at = 3  # type: ignore[attr-defined]
    th = threading.Thread(target=run.run)
    th.start()
    if callable(action):
        action(run)
    th.join(30)
    assert not th.is_alive()
    assert seen == states and run.state is end
    saved = _records(tmp_path) if run.frames_acquired else []
    assert len(saved) == run.frames_acquired  # everything acquired is on disk
    if action == "fail":
        assert run.frames_acquired == 3 and "simulated hardware failure" in run.errors[-1]
        assert "3 events failed in a row" in run.errors[-1]
    if action == "before":
        assert run.frames_acquired == 0
    if action is None:
        assert run.frames_acquired == 2 * n_t and run.errors == []
    run.cancel()  # after the end: nothing changes
    assert run.state is end


def test_pause_before_start_and_resume_while_running_do_nothing(tmp_path: Path) -> None:
    run = make_run(mem_profile(acquisition={"time_points": 2}), tmp_path, stages=[])
    run.pause()
    run.resume()
    assert run.state is S.IDLE
    assert run.run() is S.FINISHED and run.frames_acquired == 4


# ----- the pipeline's latest-frame slot --------------------------------------------------------

def test_slow_stage_drops_the_oldest_set_never_a_raw_frame(tmp_path: Path) -> None:
    n_t = 40
    stage = CopyStage(delay_s=0.02)
    made: list[Frame] = []
    run = make_run(mem_profile(acquisition={"time_points": n_t}), tmp_path, stages=[stage])
    run.signals.virtualReady.connect(made.append)
    run.run()
    rep = session_report(run)
    assert run.frames_acquired == 2 * n_t and run.errors == []
    assert rep["queues"]["pipeline_sets_dropped"] > 0
    assert rep["virtual_frames"] + rep["virtual_skipped"] == n_t
    assert rep["virtual_frames"] == stage.calls
    assert rep["queues"]["pipeline_max_depth"] <= rep["queues"]["pipeline_bound"]
    assert made[-1].id.t == n_t - 1, "the newest set is the one kept"
    records = _records(tmp_path)
    assert sum(r["role"] == "physical" for r in records) == 2 * n_t


# ----- gaps ------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop, jump, message", [
    ([(2, 0, 0, "AGP")], None, None),  # asked for again: not a gap, journaled when lost
    ([(5, 0, 0, "RNA")], None, None),
    ([], 4, "camera image number jumped"),
], ids=["lost-in-the-middle", "lost-at-the-end", "camera-counter-jump"])
def test_gaps_are_reported(tmp_path: Path, drop, jump, message) -> None:
    """A frame lost in transfer is asked for again ([faults] retries); lost every time, it is
    journaled as missing with the reason, and nothing else is counted missing."""
    prof = mem_profile(acquisition={"time_points": 6}, faults={"backoff_s": 0.0})
    backend = Tampering(open_backend(prof), drop=drop, jump_after=jump)
    run = _run(prof, tmp_path, backend=backend)
    if message is not None:
        assert any(message in e for e in run.errors), run.errors
    assert not any("never arrived" in e or "missing before" in e for e in run.errors), \
        run.errors
    assert len(_records(tmp_path)) == 12 - len(drop)
    skipped = run.faults.report()["skipped"]
    assert [(s["t"], s["channel"]) for s in skipped] == [(t, c) for t, _, _, c in drop]
    assert all("lost in transfer" in s["why"] and "after 3 retries" in s["why"]
               for s in skipped), skipped
    from acquire_vf.storage import open_dataset

    (ds,) = open_dataset(tmp_path)
    assert [(m["t"], m["channel"]) for m in ds.missing() if m["role"] == "physical"] == [
        (t, c) for t, _, _, c in drop]


# ----- stages that misbehave -----------------------------------------------------------------

@pytest.mark.parametrize("mode, message", [
    ("raise", "RuntimeError: engine exploded"),
    ("nan", "NaN or inf in 'SLOW'"),
    ("undeclared", "produced undeclared channel 'NOT-DECLARED'"),
], ids=["raises", "returns-nan", "undeclared-output"])
def test_a_failing_stage_costs_virtual_frames_only(tmp_path: Path, mode, message) -> None:
    n_t = 4
    prof = mem_profile(acquisition={"time_points": n_t}, queues={"pipeline": 8})
    run = _run(prof, tmp_path, stages=[CopyStage(mode=mode)])
    assert run.state is S.FINISHED
    assert any(message in e for e in run.errors), run.errors
    rep = session_report(run)
    assert rep["virtual_frames"] == 0
    if mode != "undeclared":
        assert rep["virtual_skipped"] == n_t
    assert sum(r["role"] == "physical" for r in _records(tmp_path)) == 2 * n_t


def test_on_failure_expose_exposes_the_channel_after_its_engine_fails(tmp_path: Path) -> None:
    n_t = 6
    prof = mem_profile(acquisition={"time_points": n_t}, queues={"pipeline": 8},
                       virtual_channels=[{"name": "DNA", "engine": "unused.onnx",
                                          "inputs": ["AGP", "RNA"], "on_failure": "expose",
                                          "preset": "DAPI", "exposure_ms": 10}])
    stage = CopyStage("DNA", mode="raise", fail_from=2)
    run = make_run(prof, tmp_path, stages=[stage])
    seen: list[Frame] = []
    run.signals.frameReady.connect(seen.append)
    # the pipeline catches up with each set before the next is taken, so the failure lands
    # before the run ends however busy the machine (its thread runs at nice 19)
    run.signals.frameReady.connect(
        lambda f: run.pipeline.wait_idle(60) if f.id.c == "RNA" else None)
    run.run()
    fallback = [e for e in run.plan.events if event_channel(e) == "DNA"]
    assert all(event_kind(e) == "optional" for e in fallback)
    assert len(fallback) == n_t and all(
        (e.channel.group, e.channel.config, e.exposure) == ("Channel", "DAPI", 10)
        for e in fallback), "one optional DAPI exposure per plane, as the hardware needs it"
    dna = [f for f in seen if f.id.c == "DNA"]
    assert dna and all(f.role == "physical" for f in dna), "DNA must be exposed after failing"
    assert any("exposing it physically" in e for e in run.errors)
    rep = session_report(run)
    assert {"name": "DNA", "role": "physical", "fallback_for": "virtual:DNA"} in rep["channels"]
    assert rep["frames_acquired"] == 2 * n_t + len(dna)
    assert not any("never arrived" in e for e in run.errors)
    saved = _records(tmp_path)
    assert sum(r["channel"] == "DNA" and r["role"] == "physical" for r in saved) == len(dna)


# ----- plans ---------------------------------------------------------------------------------

def test_multi_position_z_time_plan_runs_in_t_p_z_c_order(tmp_path: Path) -> None:
    prof = mem_profile(acquisition={
        "time_points": 2, "z_offsets_um": [0.0, 2.0],
        "positions": [{"name": "A1", "x_um": 0.0, "y_um": 0.0},
                      {"name": "B2", "x_um": 150.0, "y_um": -40.0}]})
    run = _run(prof, tmp_path)
    assert run.errors == []
    want = [(t, p, z, c) for t in range(2) for p in range(2) for z in range(2)
            for c in ("AGP", "RNA")]
    records = _records(tmp_path)
    assert [(r["t"], r["p"], r["z"], r["channel"]) for r in records] == want
    for r in records:
        assert r["z_um"] == pytest.approx((0.0, 2.0)[r["z"]])
        assert (r["x_um"], r["y_um"]) == pytest.approx(((0.0, 0.0), (150.0, -40.0))[r["p"]])
    assert run.backend.describe().z_um == 0.0, "teardown returns the stages"


def _plan_file(tmp_path: Path, channels: list[dict], fmt: str) -> Path:
    seq = useq.MDASequence(channels=channels, time_plan={"interval": 0, "loops": 2},
                           stage_positions=[(0, 0), (300, 100)], axis_order="tpcz")
    path = tmp_path / f"plan.{fmt}"
    path.write_text(seq.model_dump_json() if fmt == "json" else seq.yaml())
    return path


@pytest.mark.parametrize("channels, fmt, got", [
    ([{"config": "AGP", "exposure": 7}], "json", [("AGP", 7.0)]),
    ([{"config": "Rhodamine"}, {"config": "FITC", "exposure": 30}], "yaml",
     [("AGP", 10.0), ("RNA", 30.0)]),
    ([{"config": "GFP"}], "json", "plan channel 'GFP' matches no channel of profile"),
], ids=["by-name", "by-preset-yaml", "unknown-channel"])
def test_useq_plans_map_onto_profile_channels(tmp_path: Path, channels, fmt, got) -> None:
    plan = _plan_file(tmp_path, channels, fmt)
    prof = mem_profile()
    if isinstance(got, str):
        with pytest.raises(ProfileError, match=got) as err:
            make_run(prof, tmp_path / "out", stages=[], plan=plan)
        assert "AGP (preset Rhodamine), RNA (preset FITC)" in str(err.value)
        return
    run = _run(prof, tmp_path / "out", plan=plan)
    assert run.errors == [] and run.frames_acquired == 2 * 2 * len(got)
    records = _records(tmp_path / "out")
    assert {(r["channel"], r["exposure_ms"]) for r in records} == set(got)
    assert {r["p"] for r in records} == {0, 1}


def test_profile_plan_is_a_useq_sequence() -> None:
    prof = mem_profile(acquisition={"time_points": 3, "interval_s": 2.0,
                                    "z_offsets_um": [-1.0, 1.0]})
    seq = profile_sequence(prof)
    assert isinstance(seq, useq.MDASequence)
    assert seq.sizes["t"] == 3 and seq.sizes["c"] == 2 and seq.sizes["z"] == 2
    plan = build_plan(seq, prof, base_z_um=10.0)
    events = list(plan.events)
    assert [e.z_pos for e in events[:4]] == [9.0, 9.0, 11.0, 11.0]
    assert events[4].min_start_time == 2.0
    assert {event_channel(e) for e in plan.events} == {"AGP", "RNA"}  # the profile's names
    assert {event_kind(e) for e in plan.events} == {"plan"}
    assert {e.channel.config for e in plan.events} == {"Rhodamine", "FITC"}


class ListSink:
    """A FrameSink that keeps frames in a list: the runner takes whatever sink it is given."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.skipped: list[FrameId] = []
        self.closed = False

    def append(self, frame: Frame) -> int:
        self.frames.append(frame)
        return len(self.frames) - 1

    def skip(self, fid: FrameId, role: str, why: str) -> None:
        self.skipped.append(fid)

    def close(self) -> None:
        self.closed = True


def test_the_sink_is_passed_in(tmp_path: Path) -> None:
    prof = mem_profile(acquisition={"time_points": 3})
    backend = open_backend(prof)
    plan = build_plan(profile_sequence(prof), prof)
    sink = ListSink()
    assert dataset_layout(prof, plan, [], backend.describe()).shape == (96, 96)
    run = AcquisitionRun(prof, backend, sink, plan)
    assert run.run() is S.FINISHED
    assert sink.closed and [f.id.c for f in sink.frames] == ["AGP", "RNA"] * 3
    assert not list(tmp_path.iterdir()), "the runner itself writes no file"


def test_inserted_events_run_before_the_next_batch_and_are_never_missing(
        tmp_path: Path) -> None:
    prof = mem_profile(acquisition={"time_points": 4, "interval_s": 0.2},
                       virtual_channels=[{"name": "DNA", "engine": "unused.onnx",
                                          "inputs": ["AGP", "RNA"], "on_failure": "expose",
                                          "preset": "DAPI", "exposure_ms": 10}])
    run = make_run(prof, tmp_path, stages=[])
    sentinel = RunEvent(index={"t": 1, "p": 0, "z": 0}, exposure=10,
                        channel={"config": "DAPI", "group": "Channel"}, channel_name="DNA")

    def after_first_set(frame: Frame) -> None:
        if frame.id == FrameId(0, 0, 0, "RNA"):
            run.schedule.insert([sentinel])
            run.schedule.move_z(1.5)

    run.signals.frameReady.connect(after_first_set)
    run.run()
    assert run.errors == []
    records = _records(tmp_path)
    assert [(r["t"], r["channel"]) for r in records][:4] == \
        [(0, "AGP"), (0, "RNA"), (1, "DNA"), (1, "AGP")]
    assert len(records) == 9
    assert records[3]["z_um"] == pytest.approx(1.5), "the focus move applies from then on"


# ----- stop means stop -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cancel_at_a_random_moment_stops_within_the_event(tmp_path: Path, seed: int,
                                                          capsys) -> None:
    """A 1 s interval and 50 ms exposures: cancel at a random moment; the run must end within
    the event in progress plus a second, with everything acquired saved."""
    prof = mem_profile(connection={"exposure_time": True},
                       channels=[{"name": "AGP", "preset": "Rhodamine", "exposure_ms": 50}],
                       acquisition={"time_points": 1000, "interval_s": 1.0})
    run = make_run(prof, tmp_path, stages=[])
    th = threading.Thread(target=run.run)
    th.start()
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    t0 = time.perf_counter()
    run.cancel()
    th.join(5)
    stop_s = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n  seed {seed}: stopped {stop_s * 1e3:.0f} ms after cancel, "
              f"{run.frames_acquired} frame(s)")
    assert not th.is_alive() and run.state is S.CANCELLED
    assert stop_s < 0.05 + 1.0
    assert len(_records(tmp_path)) == run.frames_acquired


def test_force_stop_skips_waiting_frame_sets_and_keeps_the_files_readable(
        tmp_path: Path) -> None:
    prof = mem_profile(acquisition={"time_points": 30}, queues={"pipeline": 30})
    stage = CopyStage(delay_s=0.2)
    run = make_run(prof, tmp_path, stages=[stage])
    th = threading.Thread(target=run.run)
    th.start()
    _wait(lambda: run.frames_acquired >= 40)
    calls = stage.calls
    run.force_stop()
    th.join(60)  # a loaded machine starves the pipeline thread (nice 19): no wall-time bound
    assert not th.is_alive() and run.state is S.CANCELLED
    # the set in the stage's hands finishes; every set still waiting is skipped, not run
    assert stage.calls - calls <= 2, (calls, stage.calls)
    rep = session_report(run)
    assert rep["virtual_frames"] < 30 and rep["queues"]["pipeline_sets_dropped"] > 0
    assert len([r for r in _records(tmp_path) if r["role"] == "physical"]) == \
        run.frames_acquired


# ----- listeners -----------------------------------------------------------------------------

@pytest.mark.slow
def test_listeners_that_raise_on_every_frame_cannot_break_the_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A user's ``acquire()`` callbacks with a bug, and a display whose ``offer`` raises: the
    run finishes with every frame saved, each listener's exception is logged once and every
    one is counted in ``session.json`` (``listener_errors``)."""
    import json as _json
    import logging

    from acquire_vf import acquire

    class BrokenDisplay:
        def offer(self, frame: Any) -> None:
            raise ValueError("the display has a bug")

    def on_frame(frame: Any) -> None:
        raise RuntimeError("my callback has a bug")

    def on_virtual(frame: Any) -> None:
        raise RuntimeError("my callback has a bug")

    def on_run(run: Any) -> None:
        display = BrokenDisplay()
        run.signals.frameReady.connect(display.offer)
        run.signals.virtualReady.connect(display.offer)
        run.signals.stateChanged.connect(lambda: 1 / 0)  # no argument, raising

    with caplog.at_level(logging.ERROR, logger="acquire_vf.acquisition._signals"):
        report = acquire(verified_profile(), tmp_path / "run", time_points=2, on_frame=on_frame,
                         on_virtual=on_virtual, on_run=on_run)
    assert report["state"] == "finished", report["errors"]
    frames, virtual = report["frames_acquired"], report["virtual_frames"]
    assert frames >= report["frames_expected"] > 0 and virtual > 0  # with sentinels
    errors = report["listener_errors"]
    assert errors["frameReady: on_frame"] == frames
    assert errors["frameReady: BrokenDisplay.offer"] == frames
    assert errors["virtualReady: on_virtual"] == virtual
    assert errors["virtualReady: BrokenDisplay.offer"] == virtual
    assert errors["stateChanged: <lambda>"] >= 2  # running, finished
    logged = [r for r in caplog.records if "a listener of" in r.getMessage()]
    assert len(logged) == len(errors)  # once per listener, with its traceback
    assert all(r.exc_info for r in logged)
    saved = _records(tmp_path / "run")
    assert sum(r["role"] == "physical" for r in saved) == frames
    on_disk = _json.loads((tmp_path / "run" / "session.json").read_text())
    assert on_disk["listener_errors"] == errors
