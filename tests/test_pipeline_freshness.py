"""The latest-frame slot's freshness hold: with engines slower than the camera, a set that has
waited more than half the arrival interval is passed over for the next one, so a virtual
frame is about the model's own time old, not up to a whole interval more."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.pipeline import FrameSet, Pipeline
from acquire_vf.pipeline._chain import fresher_hold

STEADY = [0.0, 0.04, 0.08, 0.12, 0.16, 0.20]  # a set every 40 ms


@pytest.mark.parametrize("age, arrivals, hold", [
    (0.010, STEADY, 0.0),                                  # fresh: run it
    (0.030, STEADY, 0.020),                                # stale: hold to 1.25 intervals
    (0.045, STEADY, 0.0),                                  # the next is overdue: run it
    (0.030, STEADY[:4], 0.0),                              # no rhythm yet
    (0.030, [0.0, 0.04, 1.04, 1.08, 2.08, 2.12, 3.12, 3.16, 4.16], 0.020),  # time points 1 s apart
], ids=["fresh", "stale", "overdue", "no-rhythm", "time-point-gaps"])
def test_the_hold_rule(age, arrivals, hold) -> None:
    assert fresher_hold(age, arrivals) == pytest.approx(hold, abs=1e-9)


class _Recording:
    """Takes ``seconds`` per set and records when each set started, with its submit time."""

    name = "slow"
    outputs = (ChannelInfo("DNA", role="virtual"),)

    def __init__(self, seconds: float, spread: float = 0.0) -> None:
        self.seconds, self.spread = seconds, spread
        self.started: list[tuple[int, float, float]] = []
        self._rng = np.random.default_rng(0)

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        self.started.append((fs.t, fs.submitted, time.perf_counter()))
        time.sleep(self.seconds + self.spread * self._rng.uniform(-1, 1))
        return {}

    def close(self) -> None:
        pass


def _frame_set(t: int, keep: bool = False) -> FrameSet:
    px = np.zeros((4, 4), np.uint16)
    frame = Frame(FrameId(t, 0, 0, "AGP"), px, seq=t, elapsed_ms=0.0)
    return FrameSet(t, 0, 0, {"AGP": frame}, keep=keep)


def _submit_steadily(pipe: Pipeline, n: int, interval: float,
                     keep=lambda t: False) -> None:
    t0 = time.perf_counter()
    for t in range(n):
        time.sleep(max(0.0, t0 + t * interval - time.perf_counter()))
        pipe.submit(_frame_set(t, keep(t)))


@pytest.mark.parametrize("hold", [True, False], ids=["hold", "no-hold"])
def test_sets_run_fresh_when_the_engine_is_slower_than_the_camera(hold: bool) -> None:
    """Engine 2-3 intervals per set: without the hold a set has waited half an interval
    (30 ms) on average; with it an eighth (half the sets start as they arrive)."""
    interval, n = 0.060, 60
    stage = _Recording(2.5 * interval, spread=0.5 * interval)
    pipe = Pipeline([stage], slot_size=1, hold_for_newer=hold)
    _submit_steadily(pipe, n, interval)
    pipe.close()
    waits = [start - submitted for _, submitted, start in stage.started]
    print(f"mean wait {1e3 * np.mean(waits):.1f} ms over {len(waits)} sets "
          f"(interval {1e3 * interval:.0f} ms)")
    assert bool(np.mean(waits) < interval / 4) == hold
    assert len(stage.started) + pipe.virtual_skipped == n, "every set is run or said skipped"
    assert pipe.latency.summary()["pipeline_wait"]["n"] == len(stage.started)


def test_a_set_that_no_later_set_follows_still_runs_soon() -> None:
    """The last set before a pause (no next set comes) is held at most 1.25 intervals, then
    run without the pipeline closing."""
    interval, n = 0.050, 12
    stage = _Recording(1.6 * interval)
    pipe = Pipeline([stage], slot_size=1)
    _submit_steadily(pipe, n, interval)
    deadline = time.monotonic() + 10
    while not any(t == n - 1 for t, _, _ in stage.started):
        assert time.monotonic() < deadline, "the last set was never run"
        time.sleep(0.005)
    last = next((sub, start) for t, sub, start in stage.started if t == n - 1)
    waited = last[1] - last[0]
    print(f"the last set waited {1e3 * waited:.0f} ms")
    pipe.close()
    assert waited < 1.25 * interval + stage.seconds + 0.5  # a running call, then the hold


def test_the_hold_drops_no_sentinel_and_no_queued_set() -> None:
    """Sets kept for verification all run, though the sets between them are held for and
    dropped; a pipeline queue longer than one runs every set, in order."""
    interval, n = 0.030, 20
    stage = _Recording(2 * interval)
    pipe = Pipeline([stage], slot_size=1)
    _submit_steadily(pipe, n, interval, keep=lambda t: t % 2 == 0)
    pipe.close()
    kept = {t for t, _, _ in stage.started if t % 2 == 0}
    assert kept == set(range(0, n, 2))

    stage = _Recording(2 * interval)
    pipe = Pipeline([stage], slot_size=n)
    _submit_steadily(pipe, n, interval)
    pipe.close()
    assert [t for t, _, _ in stage.started] == list(range(n))
    assert pipe.sets_dropped == 0


def test_closing_ends_a_hold_at_once_and_runs_the_set() -> None:
    """Sets every 0.5 s; the engines are busy with set 4 until set 5 has waited 0.3 s, so
    they hold for a set 6 that never comes, for up to 0.325 s more. Closing ends the hold
    and runs set 5."""
    interval, n = 0.5, 6
    stage = _Recording(0.0)
    gate = threading.Event()

    class Gate:
        name, outputs = "gate", ()

        def process(self, fs: FrameSet) -> dict[str, Frame]:
            if fs.t == n - 2:
                gate.wait(10)
            return {}

        def close(self) -> None:
            pass

    pipe = Pipeline([Gate(), stage], slot_size=1)
    _submit_steadily(pipe, n, interval)
    time.sleep(0.3)
    gate.set()
    time.sleep(0.02)  # the worker is in the hold
    t0 = time.perf_counter()
    pipe.close()
    closed_in = time.perf_counter() - t0
    print(f"close took {1e3 * closed_in:.0f} ms, with up to 300 ms of hold left")
    assert [t for t, _, _ in stage.started][-1] == n - 1
    assert closed_in < 0.2


def test_latency_beyond_the_engine_is_recorded_frame_by_frame() -> None:
    """A frame received 30 ms before its set reaches an engine of 50 ms: its virtual frame's
    latency is at least 80 ms whole, and at least 30 ms beyond the engine's own time."""
    from acquire_vf.pipeline import virtual_frame

    class Engine:
        name = "synthesis:DNA"
        outputs = (ChannelInfo("DNA", role="virtual"),)

        def process(self, fs: FrameSet) -> dict[str, Frame]:
            time.sleep(0.05)
            src = fs.frames["AGP"]
            return {"DNA": virtual_frame(src, "DNA", src.pixels.astype(np.float32))}

        def close(self) -> None:
            pass

    pipe = Pipeline([Engine()], slot_size=1)
    fs = _frame_set(0)
    fs.frames["AGP"] = replace(fs.frames["AGP"], received=time.perf_counter() - 0.03)
    pipe.submit(fs)
    pipe.close()
    lat = pipe.latency.summary()
    assert pipe.virtual_made == 1
    assert lat["virtual_end_to_end"]["p50"] >= 80
    assert 30 <= lat["virtual_beyond_engine"]["p50"] \
        <= lat["virtual_end_to_end"]["p50"] - lat["synthesis:DNA"]["p50"] + 0.01


def test_sets_kept_for_checks_wait_only_up_to_their_bound() -> None:
    """Engines far slower than the camera while every set is wanted by a check (a channel
    under checks): at most ``kept_max`` sets wait (their raw frames held), the oldest beyond
    goes and is said skipped, and the last sets still run. Unbounded, the soak's session
    grew by a frame set's frames per set and ran on for minutes after its last set."""
    stage = _Recording(0.05)
    skipped: list[tuple[FrameId, str]] = []
    pipe = Pipeline([stage], slot_size=1, kept_max=4,
                    on_skip=lambda fid, why: skipped.append((fid, why)))
    n = 60
    for t in range(n):
        pipe.submit(_frame_set(t, keep=True))
        assert pipe.depth <= 4
    pipe.close()
    run = {t for t, _, _ in stage.started}
    said = {fid.t for fid, why in skipped if "fell behind" in why}
    assert pipe.max_depth <= 4 and pipe.kept_dropped == len(said) > 0
    assert run | said == set(range(n)) and not run & said
    assert n - 1 in run, "the newest set was dropped instead of the oldest"
