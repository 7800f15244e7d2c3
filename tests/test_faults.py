"""Device faults at the backend seam (issue: a three-day time-lapse survives its hardware).

Table-driven over both backends: each injected fault (``[debug] faults``) is met as the
profile's ``[faults]`` policy says: a transient one is retried and the frame taken, one that
persists is skipped and journaled as a missing plane with its reason, frames delivered twice
are dropped, and the run ends ``finished`` with every frame that could be taken on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from acquire_vf._session import make_run
from acquire_vf.acquisition import RunState, session_report
from acquire_vf.backends import FaultInjector, open_backend
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile

N_T = 6
CHANNELS = ("AGP", "RNA")

# kind, rule (beyond kind), frames lost, fault counted as (device, kind), retries at least
CASES: list[tuple[str, dict[str, Any], list[tuple[int, str]], tuple[str, str], int]] = [
    ("timeout", {"from_t": 2, "until_t": 2, "channel": "RNA"}, [], ("Camera", "timeout"), 1),
    ("busy", {"from_t": 1, "until_t": 4, "every": 2}, [], ("Shutter", "busy"), 1),
    ("timeout", {"from_t": 3, "until_t": 3, "channel": "AGP", "times": 0},
     [(3, "AGP")], ("Camera", "timeout"), 3),
    ("error", {"from_t": 4, "until_t": 4, "channel": "RNA"}, [(4, "RNA")], ("Camera", "error"),
     0),
    ("stage", {"from_t": 1, "until_t": 1, "channel": "AGP"}, [(1, "AGP")], ("Stage", "stage"),
     0),
    ("shape", {"from_t": 2, "until_t": 2, "channel": "AGP"}, [], ("Camera", "bad frame"), 1),
    ("nan", {"from_t": 5, "until_t": 5, "channel": "RNA", "times": 0}, [(5, "RNA")],
     ("Camera", "bad frame"), 3),
    ("duplicate", {"from_t": 1, "until_t": 2}, [], ("Camera", "duplicate"), 0),
    ("missing", {"from_t": 3, "until_t": 3, "channel": "RNA"}, [], ("Camera", "missing"), 1),
]
IDS = [f"{c[0]}-{'lost' if c[2] else 'cured'}" for c in CASES]


def _profile(kind: str, rule: dict[str, Any], backend: str) -> Any:
    conn = {"kind": "memory", "shape": [96, 96]} if backend == "memory" else {}
    specimen = {} if backend == "memory" else {"specimen": {"kind": "camera"}}
    return make_profile(**({"connection": conn} if conn else {}), **specimen,
                        acquisition={"time_points": N_T},
                        faults={"backoff_s": 0.001},
                        debug={"faults": [{"kind": kind, **rule}]})


def _check(run: Any, out: Path, lost: list[tuple[int, str]], counted: tuple[str, str],
           retries: int) -> None:
    assert run.state is RunState.FINISHED, run.errors
    rep = session_report(run)
    faults = rep["faults"]
    device, kind = counted
    assert faults["by_device"].get(device, {}).get(kind, 0) >= 1, faults["by_device"]
    assert faults["retries"] >= retries
    assert [(s["t"], s["channel"]) for s in faults["skipped"]] == lost
    assert faults["events_skipped"] == len(lost)
    (ds,) = open_dataset(out)
    taken = sorted((r["t"], r["channel"]) for r in ds.records if r["role"] == "physical")
    everything = sorted((t, c) for t in range(N_T) for c in CHANNELS)
    assert taken == sorted(set(everything) - set(lost))  # each once: duplicates dropped
    missing = [(m["t"], m["channel"], m["why"]) for m in ds.missing() if m["role"] == "physical"]
    assert [(t, c) for t, c, _ in missing] == lost  # journaled, with the reason
    assert all(kind in why or "never arrived" in why for _, _, why in missing), missing
    assert not any("never arrived" in e for e in run.errors), run.errors


@pytest.mark.parametrize(("kind", "rule", "lost", "counted", "retries"), CASES, ids=IDS)
def test_a_fault_costs_at_most_its_event_on_the_memory_backend(
        tmp_path: Path, kind: str, rule: dict[str, Any], lost: list[tuple[int, str]],
        counted: tuple[str, str], retries: int) -> None:
    profile = _profile(kind, rule, "memory")
    backend = open_backend(profile)
    assert isinstance(backend, FaultInjector)  # [debug] faults wraps the backend
    run = make_run(profile, tmp_path, backend=backend, stages=[])
    run.run()
    _check(run, tmp_path, lost, counted, retries)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "rule", "lost", "counted", "retries"),
                         [CASES[0], CASES[2], CASES[5], CASES[7], CASES[8]],
                         ids=[IDS[0], IDS[2], IDS[5], IDS[7], IDS[8]])
def test_a_fault_costs_at_most_its_event_on_micro_manager(
        microscope, tmp_path: Path, kind: str, rule: dict[str, Any],
        lost: list[tuple[int, str]], counted: tuple[str, str], retries: int) -> None:
    from acquire_vf.backends._pycromanager import PycroManagerBackend

    profile = _profile(kind, rule, "pycromanager")
    backend = FaultInjector(PycroManagerBackend(microscope, buffer_mb=profile.queues.mm_buffer_mb),
                            profile.debug.faults)
    run = make_run(profile, tmp_path, backend=backend, stages=[])
    run.run()
    _check(run, tmp_path, lost, counted, retries)


@pytest.mark.parametrize("backend", ["memory", pytest.param("pycromanager", marks=[
    pytest.mark.slow, pytest.mark.mmcore])])
def test_a_frame_taken_where_the_stage_did_not_go_says_so(
        request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    """A stage that silently stays put (``stuck``): the frame is kept, marked, and carries the
    position read back beside the intended one."""
    rule = {"kind": "stuck", "from_t": 1, "until_t": 1, "channel": "AGP"}
    profile = make_profile(**({"connection": {"kind": "memory", "shape": [96, 96]}}
                              if backend == "memory" else {"specimen": {"kind": "camera"}}),
                           acquisition={"time_points": 3, "z_offsets_um": [-2.0, 2.0]},
                           debug={"faults": [rule]})
    if backend == "memory":
        inner = open_backend(profile)
    else:
        from acquire_vf.backends._pycromanager import PycroManagerBackend

        inner = FaultInjector(PycroManagerBackend(request.getfixturevalue("microscope"),
                                                  buffer_mb=profile.queues.mm_buffer_mb),
                              profile.debug.faults)
    run = make_run(profile, tmp_path, backend=inner, stages=[])
    run.run()
    assert run.state is RunState.FINISHED, run.errors
    (ds,) = open_dataset(tmp_path)
    phys = [r for r in ds.records if r["role"] == "physical"]
    assert len(phys) == 3 * 2 * 2  # nothing lost
    off = [r for r in phys if (r.get("qc") or {}).get("stage_off_target")]
    # each AGP frame of t 1 is the first of its plane: the stage stayed at the plane before
    # it, 4 um away (t 0's +2 um, then t 1's -2 um); the RNA frames after them moved it back
    assert [(r["t"], r["z"], r["channel"]) for r in off] == [(1, 0, "AGP"), (1, 1, "AGP")]
    for r, sign in zip(off, (-1, 1), strict=True):
        assert r["qc"]["stage_off_target_um"] == pytest.approx(4.0, abs=1e-6)
        assert r["qc"]["intended_um"]["z"] - r["z_um"] == pytest.approx(sign * 4.0, abs=1e-6)
    assert session_report(run)["faults"]["by_device"]["Stage"]["off target"] == 2


def test_a_camera_dead_for_a_while_costs_its_frames_and_no_retries_once_found_dead(
        tmp_path: Path) -> None:
    """Failing ``persistent_after`` events in a row, a channel gets one try per event (no
    back-off while it is dead) and is back at once when it works again."""
    n = 12
    profile = make_profile(connection={"kind": "memory", "shape": [64, 64]},
                           acquisition={"time_points": n},
                           faults={"backoff_s": 0.001, "persistent_after": 2},
                           debug={"faults": [{"kind": "timeout", "channel": "AGP", "from_t": 2,
                                              "until_t": 7, "times": 0}]})
    run = make_run(profile, tmp_path, stages=[])
    run.run()
    rep = session_report(run)["faults"]
    assert run.state is RunState.FINISHED
    assert [s["t"] for s in rep["skipped"]] == list(range(2, 8))
    assert rep["persistent"] == {"AGP": 1}
    assert rep["retries"] == 2 * 3  # the first two failures retried; then one try each
    (ds,) = open_dataset(tmp_path)
    agp = sorted(r["t"] for r in ds.records if r["channel"] == "AGP")
    assert agp == [0, 1, 8, 9, 10, 11]  # back at t = 8, the first time point it works


def test_stop_after_ends_the_run_cleanly_with_everything_saved(tmp_path: Path) -> None:
    profile = make_profile(connection={"kind": "memory", "shape": [64, 64]},
                           acquisition={"time_points": 10},
                           faults={"backoff_s": 0.0, "retries": 1, "stop_after": 4},
                           debug={"faults": [{"kind": "error", "from_t": 3, "times": 0}]})
    run = make_run(profile, tmp_path, stages=[])
    run.run()
    assert run.state is RunState.FAILED
    assert "4 events failed in a row" in run.errors[-1]
    (ds,) = open_dataset(tmp_path)
    assert len(ds.records) == 6  # t = 0..2, both channels: on disk and readable


def test_a_fault_rule_for_a_channel_the_profile_lacks_is_one_clear_line() -> None:
    from acquire_vf._errors import ProfileError
    from acquire_vf.config import profile_from_dict
    from tests._helpers import demo_dict

    d = demo_dict()
    d["debug"] = {"faults": [{"kind": "timeout", "channel": "GFP"}]}
    with pytest.raises((ProfileError, ValueError), match="channel 'GFP' is not a channel"):
        profile_from_dict(d)


def test_the_issue_target_a_thousand_time_points_with_faults_end_completed(tmp_path: Path) -> None:
    """1,000 time points on the memory backend, 1% of events failing once (a time-out) and the
    camera failing AGP for 30 time points: every event that can be taken is taken, every
    missing plane is journaled with its reason, the run ends finished."""
    n = 1000
    profile = make_profile(connection={"kind": "memory", "shape": [32, 32]},
                           acquisition={"time_points": n},
                           faults={"backoff_s": 0.0},
                           debug={"faults": [
                               {"kind": "timeout", "channel": "AGP", "from_t": 400,
                                "until_t": 429, "times": 0},
                               {"kind": "timeout", "every": 100},
                               {"kind": "busy", "every": 97, "from_t": 1}]})
    run = make_run(profile, tmp_path, stages=[])
    run.run()
    assert run.state is RunState.FINISHED, run.errors
    rep = session_report(run)["faults"]
    transient = sum(n for d in rep["by_device"].values() for k, n in d.items())
    assert transient >= 20 + 30  # about 2% of 2000 events once, and the dead camera's
    lost = [(s["t"], s["channel"]) for s in rep["skipped"]]
    assert lost == [(t, "AGP") for t in range(400, 430)]
    (ds,) = open_dataset(tmp_path)
    assert len([r for r in ds.records if r["role"] == "physical"]) == 2 * n - 30  # 100%
    missing = [m for m in ds.missing() if m["role"] == "physical"]
    assert [(m["t"], m["channel"]) for m in missing] == lost
    assert all("timed out" in m["why"] for m in missing)


# ----- disk space, ahead of time ---------------------------------------------------------------

def _free_gb(path: Path) -> float:
    import shutil

    return shutil.disk_usage(path).free / 2**30


def test_a_disk_below_its_margin_stops_the_run_before_the_first_frame(tmp_path: Path) -> None:
    margin = _free_gb(tmp_path) + 100.0  # more than this disk has: the real disk, judged
    profile = make_profile(connection={"kind": "memory", "shape": [64, 64]},
                           acquisition={"time_points": 3}, storage={"min_free_gb": margin})
    run = make_run(profile, tmp_path, stages=[])
    run.run()
    assert run.state is RunState.FAILED and run.frames_acquired == 0
    assert "below [storage] min_free_gb" in run.errors[-1]
    assert "stopped before the disk filled" in run.errors[-1]
    assert session_report(run)["disk"]["checks"] == 1


def test_a_plan_larger_than_the_free_space_is_said_at_the_start(tmp_path: Path) -> None:
    """The rest of the plan (2 x 4000 frames of 512 x 512 x 2 bytes: about 4 GB) against a
    margin that leaves 1 GB of this disk: a warning at the start, and the run goes on."""
    margin = max(_free_gb(tmp_path) - 1.0, 0.0)
    profile = make_profile(connection={"kind": "memory", "shape": [512, 512]},
                           acquisition={"time_points": 4000}, storage={"min_free_gb": margin})
    run = make_run(profile, tmp_path, stages=[])
    run.signals.frameReady.connect(lambda f: run.cancel() if f.id.t >= 1 else None)
    run.run()
    assert run.state is RunState.CANCELLED
    said = [e for e in run.errors if e.startswith("disk space:")]
    assert len(said) == 1 and "the run will stop early unless space is freed" in said[0], \
        run.errors
