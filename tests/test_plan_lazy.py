"""Plans are consumed as the run goes (issue 34, item 6): nothing before the first frame grows
with the number of time points, and the frame bookkeeping reads the plan as frames arrive."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import pytest
import useq

from acquire_vf._frames import FrameId
from acquire_vf._session import make_run
from acquire_vf.acquisition import build_plan
from acquire_vf.acquisition._plan import PlanEvents, count_events, profile_sequence
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.acquisition._state import RunState
from tests._helpers import make_profile

CH = [{"config": "AGP"}, {"config": "RNA"}]


@pytest.mark.parametrize("seq", [
    useq.MDASequence(time_plan={"interval": 0, "loops": 7}, channels=CH,
                     z_plan={"range": 4, "step": 1}),
    useq.MDASequence(time_plan={"interval": 0, "loops": 7},
                     channels=[{"config": "AGP", "acquire_every": 3}, {"config": "RNA"}],
                     stage_positions=[(0, 0, 0), (10, 10, 0)]),
    useq.MDASequence(channels=[{"config": "AGP", "do_stack": False}, {"config": "RNA"}],
                     z_plan={"range": 4, "step": 1}, time_plan={"interval": 0, "loops": 2}),
    useq.MDASequence(channels=CH, grid_plan={"rows": 2, "columns": 3},
                     time_plan={"interval": 0, "loops": 2}),
    useq.MDASequence(channels=CH, stage_positions=[
        {"x": 0, "y": 0, "sequence": {"grid_plan": {"rows": 1, "columns": 2}}}, (5, 5)]),
], ids=["t-z-c", "acquire-every-3", "middle-plane-only", "grid", "sub-sequence"])
def test_a_plan_is_counted_from_its_sizes_as_useq_iterates_it(seq: useq.MDASequence) -> None:
    assert count_events(seq) == sum(1 for _ in seq)


def test_a_long_plan_walked_in_chunks_is_the_plan_walked_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from acquire_vf.acquisition import _plan

    seq = useq.MDASequence(time_plan={"interval": 1.5, "loops": 11}, axis_order="tpzc",
                           channels=[{"config": "AGP", "acquire_every": 3}, {"config": "RNA"}],
                           stage_positions=[(0, 0, 0), (10, 10, 0)],
                           z_plan={"range": 2, "step": 1})
    whole = [(int(e.index.get("t", 0)), e.min_start_time, e) for e in seq]
    monkeypatch.setattr(_plan, "CHUNK_T", 1)  # chunks of 3 time points (AGP's every 3rd)

    def key(t: int, start: float | None, e: useq.MDAEvent) -> tuple:
        return (t, start, e.index.get("p"), e.index.get("z"), e.index.get("c"), e.x_pos,
                e.z_pos)

    chunked = list(_plan.iter_plan(seq))
    assert [key(*x) for x in chunked] == [key(*x) for x in whole]
    # positions x planes x (AGP 4 + RNA 11)
    assert len(chunked) == count_events(seq) == 2 * 3 * (4 + 11)


def test_a_plan_of_a_hundred_million_time_points_costs_nothing_before_its_first_batch() -> None:
    prof = make_profile(connection={"kind": "memory", "shape": [64, 64]},
                        acquisition={"time_points": 100_000_000, "interval_s": 0.0})
    tracemalloc.start()
    plan = build_plan(profile_sequence(prof), prof, base_z_um=0.0)
    from acquire_vf.acquisition._schedule import Schedule

    sched = Schedule(plan, 0.0)
    first = next(sched.batches(lambda: False, lambda dz: None))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(plan.events, PlanEvents)
    n_ch = len(prof.channels)
    assert plan.frames_expected == 100_000_000 * n_ch and plan.time_points == 100_000_000
    assert sched.sequence.total == plan.frames_expected
    assert [e.index["t"] for e in first][:n_ch] == [0] * n_ch
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB allocated before the first batch"


def test_the_checker_reads_the_plan_as_frames_arrive() -> None:
    ids = (FrameId(t, 0, 0, c) for t in range(10**9) for c in ("A", "B", "V"))  # endless
    chk = SequenceChecker(ids, optional={"V"}, total=2 * 10**9)
    assert chk.arrived(FrameId(0, 0, 0, "A")) is None
    assert chk.arrived(FrameId(0, 0, 0, "A")) is None  # a duplicate is not a gap
    assert chk.arrived(FrameId(0, 0, 0, "V")) is None  # an optional fallback exposure
    chk.excuse(FrameId(0, 0, 0, "B"))  # given up after a device fault: not a gap
    assert chk.arrived(FrameId(1, 0, 0, "A")) is None
    msg = chk.arrived(FrameId(5, 0, 0, "B"))
    assert msg is not None and "8 frame(s) missing" in msg
    assert "first missing {'t': 1, 'p': 0, 'z': 0, 'c': 'B'}" in msg
    chk.allow(FrameId(5, 0, 0, "Mito"))  # an inserted exposure
    assert chk.arrived(FrameId(5, 0, 0, "Mito")) is None
    far = chk.arrived(FrameId(10**8, 0, 0, "A"))  # beyond the look-ahead: not a huge gap
    assert far is not None and "not in the protocol" in far
    assert chk.arrived(FrameId(6, 0, 0, "A")) is None  # the plan goes on where it was
    assert chk.next_index == 13 and chk.missing_at_end == 2 * 10**9 - 13
    assert len(chk.gaps) == 1 and len(chk.unexpected) == 1


@pytest.mark.timeout(120)
def test_a_run_of_a_million_time_points_starts_and_stops_like_a_short_one(
        tmp_path: Path) -> None:
    prof = make_profile(connection={"kind": "memory", "shape": [64, 64]},
                        acquisition={"time_points": 1_000_000, "interval_s": 0.0})
    run = make_run(prof, tmp_path, stages=[])
    th = threading.Thread(target=run.run)
    th.start()
    seen = threading.Event()
    while th.is_alive() and not seen.wait(0.01):
        if run.frames_acquired >= 20:
            seen.set()
    run.cancel()
    th.join(60)
    assert not th.is_alive() and seen.is_set()
    st = run.status()
    assert st.state is RunState.CANCELLED
    assert st.frames_expected == 1_000_000 * len(prof.channels)
