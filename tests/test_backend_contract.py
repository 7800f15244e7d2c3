"""One contract, every backend (issue: where Micro-Manager users are now): the behaviour the
runner relies on, as one table run against the memory, replay, pycromanager and pymmcore-plus
backends, each real (Micro-Manager's demo configuration for the last two).

- events run in the order given, one frame each, carrying its event;
- a later batch of other events (what the focus loop and the verifier insert) runs as well;
- ``move_z`` moves the focus between batches (the frames say so, read back);
- ``abort`` from another thread ends a batch within an event, without an error;
- a device error ends ``execute`` with that error; ``teardown`` after it returns the stages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acquire_vf._errors import AcquisitionError
from acquire_vf.acquisition import build_plan
from acquire_vf.acquisition._plan import profile_sequence
from acquire_vf.backends import FaultInjector, event_channel, open_backend
from tests._helpers import make_profile

BACKENDS = ["memory", "replay",
            pytest.param("pycromanager", marks=[pytest.mark.mmcore, pytest.mark.slow]),
            pytest.param("pymmcore-plus", marks=pytest.mark.slow)]


def _profile(kind: str, faults: list[dict[str, Any]] | None = None) -> Any:
    conn = {"connection": {"kind": "memory", "shape": [64, 64]}} if kind in (
        "memory", "replay") else {}
    return make_profile(**conn, acquisition={"time_points": 4},
                        debug={"faults": faults or []})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run for the replay backend to play."""
    from acquire_vf._session import make_run

    out = tmp_path_factory.mktemp("saved")
    make_run(_profile("memory"), out, stages=[]).run()
    return out


def _backend(kind: str, request: pytest.FixtureRequest, profile: Any) -> Any:
    if kind == "replay":
        return open_backend(profile, "replay", replay=request.getfixturevalue("saved"),
                            as_fast_as_possible=True)
    if kind == "pycromanager":
        from acquire_vf.backends._pycromanager import PycroManagerBackend

        inner = PycroManagerBackend(request.getfixturevalue("microscope"),
                                    buffer_mb=profile.queues.mm_buffer_mb)
        return FaultInjector(inner, profile.debug.faults) if profile.debug.faults else inner
    return open_backend(profile, kind)


def _events(backend: Any, profile: Any, kind: str) -> list[Any]:
    if kind == "replay":
        table = {c.name: (c.group, c.preset, c.exposure_ms) for c in profile.channels}
        return list(backend.inner.events(table) if isinstance(backend, FaultInjector)
                    else backend.events(table))
    info = backend.describe()
    return list(build_plan(profile_sequence(profile), profile, base_z_um=info.z_um).events)


@contextlib.contextmanager
def _running(kind: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, list[Any]]]:
    """The backend set up for a run, with its events; torn down after, whatever happens."""
    prof = _profile(kind)
    b = _backend(kind, request, prof)
    b.setup(lambda e: True)
    try:
        yield b, _events(b, prof, kind)
    finally:
        b.teardown()


@pytest.mark.parametrize("kind", BACKENDS)
def test_events_run_in_order_and_a_later_batch_runs_too(
        kind: str, request: pytest.FixtureRequest) -> None:
    with _running(kind, request) as (b, planned):
        events = [e for e in planned if event_channel(e) in ("AGP", "RNA")]
        first, later = events[:4], events[4:6]
        got = list(b.execute(first))
        assert [(g.event.index["t"], event_channel(g.event)) for g in got] == \
            [(e.index["t"], event_channel(e)) for e in first]
        assert all(g.pixels.shape == tuple(b.describe().shape) for g in got)
        again = list(b.execute(later))
        assert [event_channel(g.event) for g in again] == [event_channel(e) for e in later]


@pytest.mark.parametrize("kind", [k for k in BACKENDS if k != "replay"])
def test_move_z_moves_the_focus_between_batches(kind: str,
                                                request: pytest.FixtureRequest) -> None:
    def z(md: dict[str, Any]) -> float:  # read back where a backend reads it back
        return float(md["ZPosition_um"] if "ZPosition_um" in md
                     else md["ZPosition_um_Intended"])

    with _running(kind, request) as (b, events):
        ev = events[0].model_copy(update={"z_pos": None})  # z left to move_z
        (before,) = list(b.execute([ev]))
        b.move_z(3.0)
        (after,) = list(b.execute([ev]))
        assert z(after.metadata) - z(before.metadata) == pytest.approx(3.0, abs=0.05)


def test_a_replay_cannot_move_and_says_how_far_it_was_asked(saved: Path) -> None:
    prof = _profile("replay")
    b = open_backend(prof, "replay", replay=saved)
    b.move_z(2.0)
    b.move_z(-0.5)
    assert b.dz_um == pytest.approx(1.5)


@pytest.mark.parametrize("kind", BACKENDS)
def test_abort_from_another_thread_ends_the_batch_without_an_error(
        kind: str, request: pytest.FixtureRequest) -> None:
    got: list[Any] = []
    with _running(kind, request) as (b, events):
        for img in b.execute(events):
            got.append(img)
            if len(got) == 1:
                threading.Thread(target=b.abort).start()
        assert 1 <= len(got) < len(events)


@pytest.mark.parametrize("kind", [k for k in BACKENDS if k != "replay"])
def test_a_device_error_ends_the_batch_and_teardown_returns_the_stages(
        kind: str, request: pytest.FixtureRequest) -> None:
    prof = _profile(kind, faults=[{"kind": "error", "from_t": 1, "until_t": 1,
                                   "channel": "RNA", "times": 0}])
    b = _backend(kind, request, prof)
    start = b.describe()
    b.setup(lambda e: True)
    got: list[Any] = []
    with pytest.raises(AcquisitionError, match="property error"):
        for img in b.execute(_events(b, prof, kind)):
            got.append(img)
    assert [(g.event.index["t"], event_channel(g.event)) for g in got][-1][0] <= 1
    b.teardown()
    end = b.describe()
    assert end.z_um == pytest.approx(start.z_um, abs=0.05)


def test_every_backend_the_factory_knows_is_in_the_table() -> None:
    from acquire_vf.backends._factory import BACKENDS as KNOWN

    names = {p if isinstance(p, str) else p.values[0] for p in BACKENDS}
    assert names == set(KNOWN)
