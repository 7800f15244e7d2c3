"""One session, as ``demo`` and ``live`` run it: connect, acquire, save, report."""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acquire_vf._errors import AcquireVFError, DataError, ProfileError
from acquire_vf._guard import Guard
from acquire_vf.acquisition import (
    FOCUS_LOG,
    SENTINEL_LOG,
    AcquisitionRun,
    EventLog,
    RunPlan,
    RunSignals,
    Schedule,
    build_plan,
    dataset_layout,
    load_plan,
    make_focus,
    make_verifier,
    policy_report,
    print_session,
    profile_sequence,
    session_report,
    write_session,
)
from acquire_vf.backends import AcquisitionBackend, open_backend
from acquire_vf.config import AutofocusClosedLoop, Profile, Refocusing
from acquire_vf.pipeline import FocusScoreStage, RunStages, Stage
from acquire_vf.storage import WRITERS, FrameSink, prepare_output

if TYPE_CHECKING:
    from acquire_vf.display import GuiThreadCollector

log = logging.getLogger(__name__)


def default_out_dir(profile: Profile) -> Path:
    return profile.storage.folder / time.strftime(f"{profile.name}-%Y%m%d-%H%M%S")


def make_run(profile: Profile, out_dir: Path, *,
             stages: RunStages | Sequence[Stage] | None = None,
             backend: AcquisitionBackend | None = None, acquisition: str | None = None,
             time_points: int | None = None, plan: Path | None = None,
             hooks: dict[str, Any] | None = None, replay: Path | None = None,
             as_fast_as_possible: bool = False) -> AcquisitionRun:
    """A run ready to start: the backend connected, the plan built, the sink open.

    ``backend`` is used as given, else ``acquisition`` (``pycromanager``, ``memory``,
    ``replay``) or the profile's connection picks one. The plan is the profile's
    ``[acquisition]`` (``time_points`` overrides its count), a useq file (``plan``), or the
    replayed dataset's own frames. The sink is an OME-TIFF or OME-Zarr store in ``out_dir``.
    ``stages``: the run's stages (:func:`build_stages`), or a plain sequence run in order
    (default: the focus measure alone).
    """
    stages = RunStages(score=FocusScoreStage()) if stages is None else RunStages.of(stages)
    prepare_output(out_dir)
    sink_path = out_dir / f"{profile.storage.name}{profile.storage.suffix}"
    if sink_path.exists():  # before any hardware moves
        from acquire_vf._errors import StorageError

        raise StorageError(f"refusing to overwrite existing file '{sink_path}'")
    if backend is None:
        backend = open_backend(profile, "replay" if replay else acquisition, hooks=hooks,
                               replay=replay, as_fast_as_possible=as_fast_as_possible)
    info = backend.describe()
    _warm_to_frames(stages, info.shape)
    if replay is not None:
        run_plan = replay_plan(profile, backend)
    else:
        seq = load_plan(plan) if plan is not None else profile_sequence(profile, time_points)
        if plan is not None and time_points is not None and seq.time_plan is not None:
            seq = seq.model_copy(update={"time_plan": seq.time_plan.model_copy(
                update={"loops": time_points})})
        run_plan = build_plan(seq, profile, base_z_um=info.z_um, base_xy_um=info.xy_um)
    layout = dataset_layout(profile, run_plan, stages, info)
    sink: FrameSink = WRITERS[profile.storage.format][0](sink_path, layout)
    # the schedule and signals first: the focus controller is built on them
    schedule = Schedule(run_plan, info.z_um, closed_loop=profile.autofocus.closed_loop)
    signals = RunSignals()
    return AcquisitionRun(profile, backend, sink, run_plan, stages=stages,
                          verifier=make_verifier(profile, stages, signals),
                          pace_to_engines=(replay is not None and as_fast_as_possible) or
                          getattr(profile.connection, "pace_to_engines", False),
                          focus=make_focus(profile, stages, schedule, signals.focus.emit),
                          schedule=schedule, signals=signals)


def _warm_to_frames(stages: RunStages, shape: tuple[int, int]) -> None:
    """Each engine once through the tiler at the camera's frame size, now that it is known:
    the first live frames then find their tile shapes loaded and their CUDA graphs captured."""
    for e in stages.engines():
        if not hasattr(e, "tile"):  # an estimator: whole frames, no tiler
            continue
        try:
            e.warmup(frame_shape=shape)
        except Exception as err:  # a backend's own exception type: one line, engine named
            from acquire_vf.inference import EngineFileError

            msg = " ".join(str(err).split())[:300]
            raise EngineFileError(f"engine '{e.card.name}' failed its warm-up at the "
                                  f"camera's {shape[1]} x {shape[0]} frames on {e.backend}: "
                                  f"{msg}") from err


def replay_plan(profile: Profile, backend: Any) -> RunPlan:
    """The replayed dataset's physical frames as the run's events, checked against the
    profile: every physical channel the profile acquires must be in the dataset."""
    table = {c.name: (c.group, c.preset, c.exposure_ms) for c in profile.channels}
    missing = [c for c in table if c not in backend.channels]
    if missing:
        raise DataError(f"replay: profile '{profile.name}' needs physical channel(s) "
                        f"{missing}; the dataset has {backend.channels}")
    optional = {v.name: (v.group, v.preset or "", v.exposure_ms or 0.0)
                for v in profile.exposable_virtual}
    table.update({k: v for k, v in optional.items() if k in backend.channels})
    lay = backend.file.layout
    return RunPlan(events=backend.events(table, frozenset(optional)),
                   positions=list(lay.positions), z_offsets_um=lay.z_offsets_um,
                   optional=frozenset(optional))


def _missing(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per channel, the planes the run never made (virtual) or gave up (physical: a device
    fault), by reason (not dark images)."""
    from acquire_vf.storage import missing_summary, open_dataset

    try:
        files = open_dataset(out)
    except Exception:  # noqa: BLE001 - no dataset (a run refused before its first frame)
        return {}, {}
    missing = [m for f in files for m in f.missing()]
    return missing_summary(missing), missing_summary(missing, "physical")


def _control(run: AcquisitionRun, out: Path) -> Any:
    """The run's control socket (``acquire-vf status|pause|resume|stop RUN_DIR``); ``None``
    where Unix sockets are not (Windows)."""
    import socket

    if not hasattr(socket, "AF_UNIX"):
        return None
    from acquire_vf._control import ControlServer, live_status

    started = time.monotonic()
    time_points = run.plan.time_points
    return ControlServer(run, out, lambda: live_status(run, out, started, time_points))


def run_session(profile: Profile, out_dir: Path | None, *, time_points: int | None = None,
                profile_source: str = "", stages: RunStages | Sequence[Stage] | None = None,
                quiet: bool = False, quiet_libraries: bool = True,
                backend: str | None = None, display: bool = False,
                on_close: str = "ask", close_when_done: bool = False,
                screenshot: Path | None = None, acquisition: str | None = None,
                plan: Path | None = None, replay: Path | None = None,
                as_fast_as_possible: bool = False,
                on_run: Callable[[AcquisitionRun], None] | None = None) -> dict[str, Any]:
    """Acquire as ``profile`` says into ``out_dir``; return the session report.

    ``on_run`` is called with the run once it is built and before its first event: the place
    to connect to ``run.signals`` (frames, virtual frames, fidelity, focus, state, errors).

    Ctrl-C cancels within the current event (frames so far are saved, the report is
    written); a second Ctrl-C stops without waiting for the engines. A fatal error is raised
    after the data and ``session.json`` are safely on disk. pycromanager prints tracebacks of
    its own threads to stderr; with ``quiet_libraries`` they go to the debug log instead, and
    the user sees the run's one-line error.

    ``backend`` picks the engines' backend; ``acquisition`` the acquisition backend
    (``pycromanager``, ``memory``); ``plan`` a useq-schema file instead of the profile's
    ``[acquisition]``; ``replay`` a saved dataset to play through the pipeline.

    With ``display`` the live window shows the run (the run goes to a worker thread, Qt keeps
    the main one); ``on_close`` says what closing it mid-run does (ask, stop, continue), and
    ``close_when_done`` closes it when the run ends (otherwise it stays up to be looked at);
    ``screenshot`` saves the window as PNG when the run ends, then closes it.
    """
    out = out_dir or default_out_dir(profile)
    from acquire_vf._control import refuse_if_running

    refuse_if_running(out)
    created = not out.exists()
    prepare_output(out)
    guard = Guard(out)  # cleans up if this process dies without ending (an abort, kill -9)
    collector = None
    if display:  # with a window up, cycles are collected on the GUI thread only
        from acquire_vf.display import GuiThreadCollector

        collector = GuiThreadCollector().start()
    try:
        backend_desc = None
        host = None
        try:
            host = engine_host(profile) if stages is None else None
            if stages is None:
                stages, backend_desc = build_stages(profile, backend, host=host)
            run = make_run(profile, out, stages=stages, acquisition=acquisition,
                           time_points=time_points, plan=plan, replay=replay,
                           as_fast_as_possible=as_fast_as_possible)
        except BaseException:
            if host is not None:
                host.close()
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # refused before anything was written: leave no empty run folder
            raise
        if host is not None:
            run.attach_engine_host(host)
        logs: list[EventLog] = []  # every focus event and sentinel on disk (session.json: a sample)
        if run.focus is not None:
            logs.append(EventLog(out / FOCUS_LOG))
            run.signals.focus.connect(logs[-1].write)
            run.focus.log = FOCUS_LOG
        if run.verifier is not None:
            logs.append(EventLog(out / SENTINEL_LOG))
            run.signals.fidelity.connect(logs[-1].write)
            run.verifier.log = SENTINEL_LOG
        if on_run is not None:
            on_run(run)
        restore, stopped_by = _cancel_on_signals(run)
        control = None
        try:
            control = _control(run, out)
            with _third_party_stderr_to_log(enabled=quiet_libraries):
                if collector is not None:
                    _run_with_window(run, profile, stages, backend_desc, on_close,
                                     close_when_done, screenshot, collector)
                else:
                    _run_headless(run, progress=not quiet)
        finally:
            restore()
            if control is not None:
                control.close()
            for event_log in logs:
                event_log.close()
            if host is not None:
                host.close()
            report = session_report(run, profile_source=profile_source, backend=backend_desc)
            if stopped_by:
                report["stopped_by"] = stopped_by[0]
            elif control is not None and control.stopped:
                report["stopped_by"] = STOPPED_BY_COMMAND
            if replay is not None and run.verifier is not None and run.data_path is not None \
                    and run.data_path.exists() and run.fatal_error is None:
                report["policy"] = policy_report(replay, out, run.verifier, report["light_dose"])
            if out.is_dir():
                report["missing_virtual_planes"], physical = _missing(out)
                if physical:
                    report["missing_physical_planes"] = physical
                write_session(report, out)
        if not quiet:
            print_session(report)
            log.info("saved to %s", out)
        if run.fatal_error is not None:
            raise run.fatal_error
        return report
    finally:
        guard.done()
        if collector is not None:
            collector.stop()


def _run_headless(run: AcquisitionRun, *, progress: bool) -> None:
    """Run without a window; with ``progress``, say how it is going on stderr (a redrawn line
    on a terminal, a line a minute elsewhere; :mod:`acquire_vf.acquisition._progress`)."""
    if not progress:
        run.run()
        return
    from acquire_vf.acquisition import RunProgress

    reporter = RunProgress(run)
    reporter.start()
    try:
        run.run()
    finally:
        reporter.stop()


def engine_host(profile: Profile) -> Any:
    """The engine host process for the profile's engines (``compute.host = "process"``), or
    ``None`` (engines in this process, or none to run). On a machine with four cores or more
    the host keeps off core 0 (acquisition's); it always runs at the lowest priority (nice 19,
    as the in-process pipeline thread does): on two cores, nice 5 left the camera 0.81-0.84 of
    its rate beside an engine 20x slower than it, nice 19 0.98-0.99."""
    uses = profile.virtual_channels or profile.refocus_engines() or \
        profile.estimator_engines()
    if profile.compute.host != "process" or not uses:
        return None
    import os

    from acquire_vf.engine_host import EngineHost, sweep_orphans

    gone = sweep_orphans()  # blocks of sessions killed where no guard could remove them
    if gone:
        log.info("removed %d shared-memory block(s) of sessions that are gone", gone)
    c = profile.compute
    return EngineHost(deadline_s=c.host_deadline_s, restarts=c.host_restarts,
                      avoid_cores=(0,) if (os.cpu_count() or 1) >= 4 else (), nice=19)


def _run_with_window(run: AcquisitionRun, profile: Profile,
                     stages: RunStages | Sequence[Stage],
                     backend: str | None, on_close: str, close_when_done: bool,
                     screenshot: Path | None, collector: GuiThreadCollector) -> None:
    """Run on a worker thread under the live window; return when both are done. Cycles are
    collected on this (the GUI) thread only: from a timer while the window is up, from the
    wait for the run once it is closed."""
    from acquire_vf._frames import ChannelInfo
    from acquire_vf.display import LiveWindow

    channels = [ChannelInfo(c.name) for c in profile.channels]
    channels += [c for s in RunStages.of(stages) for c in s.outputs]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run.run()
        except BaseException as e:  # re-raised on the main thread below
            errors.append(e)

    thread = threading.Thread(target=work, name="acquire-vf run", daemon=True)
    window = LiveWindow(channels, run=run, start=thread.start, on_close=on_close,
                        backend=backend, title=f"acquire-vf: {profile.name}",
                        refresh_hz=profile.display.refresh_hz,
                        composite_off=transmitted_channels(profile))
    window.connect(run.signals)
    from pyqtgraph.Qt import QtCore

    watch = QtCore.QTimer()
    watch.setInterval(100)  # also lets Python handle Ctrl-C while Qt's loop runs

    def check() -> None:
        if window.started and not thread.is_alive():
            watch.stop()
            window.run_done = True
            if not window.closed:
                window.run_finished()
                if screenshot is not None:
                    window.process_events(0.3)
                    if not window.window.grab().save(str(screenshot)):
                        log.error("could not write the screenshot '%s'", screenshot)
                if close_when_done or screenshot is not None:
                    window.window.close()  # the last window closed ends the event loop

    watch.timeout.connect(check)
    watch.start()
    collect = QtCore.QTimer()
    collect.setInterval(1000)
    collect.timeout.connect(collector.check)
    collect.start()
    window.window.show()
    window.start()
    window.app.setQuitOnLastWindowClosed(True)
    window.app.exec()
    watch.stop()
    collect.stop()
    for timer in (window.status_timer, window.frame_timer, window.histogram_timer):
        timer.stop()
    while thread.is_alive():  # closed with "continue": the run goes on headless until it ends
        thread.join(1.0)
        collector.check()
    window.release()
    if errors:
        raise errors[0]


TRANSMITTED = ("bf", "brightfield", "dic", "phase", "phc", "transmitted")
"""Channel or preset names of transmitted light (no stain: left out of the composite)."""


def transmitted_channels(profile: Profile) -> frozenset[str]:
    """Physical channels of transmitted light, by their name or Micro-Manager preset."""
    return frozenset(c.name for c in profile.channels
                     if any(str(v).lower().startswith(TRANSMITTED)
                            for v in (c.name, c.preset)))


class _LogWriter(io.TextIOBase):
    def write(self, s: str) -> int:
        if s.strip():
            log.debug("library stderr: %s", s.rstrip())
        return len(s)


@contextlib.contextmanager
def _third_party_stderr_to_log(enabled: bool) -> Iterator[None]:
    """Route ``sys.stderr`` to the debug log while Micro-Manager runs (logging handlers keep
    their own stream, so acquire-vf's warnings still reach the terminal)."""
    if not enabled:
        yield
        return
    saved = sys.stderr
    sys.stderr = _LogWriter()
    try:
        yield
    finally:
        sys.stderr = saved


def build_stages(profile: Profile, backend: str | None = None, host: Any = None
                 ) -> tuple[RunStages, str | None]:
    """The focus measure, the defocus estimators, the refocus stage and one synthesis stage per
    virtual channel.

    Engines are created (and checked against the profile) before Micro-Manager starts, so a
    corrupt engine or a card that does not fit the profile stops the run before any exposure.
    With ``host`` (an :class:`~acquire_vf.engine_host.EngineHost`) their networks run there.
    """
    score = FocusScoreStage()
    if not profile.autofocus.refocuses and not profile.virtual_channels:
        return RunStages(score=score), None
    from acquire_vf.inference import create_engine, create_estimator
    from acquire_vf.pipeline import FocusEstimateStage, RefocusStage, SynthesisStage

    physical = [c.name for c in profile.channels]
    def make(path: Path) -> Any:
        t = profile.tiling
        return create_engine(path, profile.compute, tile=t.tile, overlap=t.overlap,
                             batch=t.batch, backend=backend, host=host)

    used = []
    refocus: dict[str, Any] = {}
    by_file: dict[Path, Any] = {}
    for channel, path in profile.refocus_engines().items():
        if path not in by_file:
            by_file[path] = make(path)
            if by_file[path].card.task != "refocus":
                raise ProfileError(f"autofocus engine '{path}' is a "
                                   f"{by_file[path].card.task} engine; expected a refocus "
                                   "engine")
            used.append(by_file[path])
        refocus[channel] = by_file[path]
    estimators = {c: create_estimator(p, profile.compute, backend=backend, host=host)
                  for c, p in profile.estimator_engines().items()}
    used.extend(estimators.values())
    synthesis: list[SynthesisStage] = []
    for v in profile.virtual_channels:
        engine = make(v.engine)
        card = engine.card
        missing = [c for c in card.inputs if c not in physical]
        if missing or tuple(v.inputs) != card.inputs:
            raise ProfileError(
                f"virtual channel '{v.name}': engine '{card.name}' expects input channels "
                f"{list(card.inputs)}, the profile gives {list(v.inputs)}"
                + (f" and has no physical channel(s) {missing}" if missing else ""))
        ver = profile.verification
        override = ver.acceptance.get(v.name) if ver is not None else None
        synthesis.append(SynthesisStage(
            v.name, engine, tuple(v.inputs), passes=ver.uncertainty_passes if ver else 0,
            uncertainty_max=override.uncertainty_max if override is not None else None))
        used.append(engine)
    backends = sorted({f"{e.backend} ({e.runner.device}, {e.precision})" for e in used})
    for e in used:
        try:
            e.warmup()
        except Exception as err:  # a backend's own exception type: one line, engine named
            from acquire_vf.inference import EngineFileError

            msg = " ".join(str(err).split())[:300]
            raise EngineFileError(f"engine '{e.card.name}' failed its warm-up run on "
                                  f"{e.backend}: {msg}") from err
    af = profile.autofocus
    refocus_stage = None
    if refocus and isinstance(af, Refocusing):
        refocus_stage = RefocusStage(
            refocus, policy=af.policy, threshold=af.focus_threshold,
            confident_sigma=af.confident_sigma_um if isinstance(af, AutofocusClosedLoop)
            else RefocusStage.CONFIDENT_SIGMA)
    return RunStages(
        score=score, estimate=FocusEstimateStage(estimators) if estimators else None,
        refocus=refocus_stage,
        synthesis=tuple(synthesis)), ", ".join(backends)


STOPPED_BY_COMMAND = "acquire-vf stop"
"""``session.json``'s ``stopped_by`` for a run stopped from another shell (exit code 0: the
stop was asked for and everything acquired is saved)."""
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
"""Signals that stop a run in order: Ctrl-C, and what ``kill``, systemd, job schedulers and
``docker stop`` send (SIGTERM), or a closed terminal (SIGHUP)."""


def _cancel_on_signals(run: AcquisitionRun) -> tuple[Any, list[str]]:
    """Ctrl-C, SIGTERM or SIGHUP cancels within the current event (the run ends
    ``cancelled``, everything acquired saved, ``session.json`` and the OME-XML written); a
    second one stops at once (raw frames still all written and the files readable; frame sets
    waiting for engines are skipped). Returns how to restore the handlers, and the name of the
    signal that stopped the run (empty if none)."""
    if threading.current_thread() is not threading.main_thread():
        return (lambda: None), []
    names = [n for n in STOP_SIGNALS if n in signal.Signals.__members__]
    previous = {n: signal.getsignal(signal.Signals[n]) for n in names}
    got: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        what = "Ctrl-C" if name == "SIGINT" else name
        got.append(name)
        if len(got) == 1:
            log.warning("%s: cancelling within the current event, everything acquired is "
                        "saved (again: stop without waiting for the engines)", what)
            run.cancel()
        else:
            log.warning("%s again: stopping now, without waiting for the engines (a third "
                        "interrupts at once)", what)
            for n in names:
                signal.signal(signal.Signals[n], signal.default_int_handler
                              if n == "SIGINT" else signal.SIG_DFL)
            run.force_stop()

    for n in names:
        signal.signal(signal.Signals[n], handler)

    def restore() -> None:
        for n in names:
            signal.signal(signal.Signals[n], previous[n])

    return restore, got


__all__ = ["AcquireVFError", "default_out_dir", "make_run", "replay_plan", "run_session"]
