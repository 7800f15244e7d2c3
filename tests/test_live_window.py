"""The live window, offscreen: latest frames from other threads, overlays, controls, closing.

Tests marked ``qt`` run in a pytest process of their own (see conftest); the demo runs with the
real Micro-Manager demo configuration.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from acquire_vf._errors import DisplayUnavailable
from acquire_vf._frames import ChannelInfo
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile, run_cli
from tests.qt_helpers import DNA, close_when_saving, frame, grab, gradients, main_window, trend
from tests.test_display import needs_gui

pytestmark = pytest.mark.display

OFFSCREEN = {"QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"}


def _window():  # noqa: ANN202
    from acquire_vf.display import LiveWindow

    win = LiveWindow([ChannelInfo("AGP"), DNA], on_close="stop", refresh_hz=50)
    win.window.show()
    return win


@needs_gui
@pytest.mark.qt
def test_live_window_shows_the_latest_frames_offered_from_other_threads() -> None:
    win = _window()
    right, down = gradients()

    def feed() -> None:
        for t in range(50):  # bursts faster than the GUI draws: some skipped, none wait
            win.offer(frame("AGP", t, right if t % 2 else down))
            win.offer(frame("DNA", t, down if t % 2 else right, "virtual"))
            if t % 10 == 9:
                time.sleep(0.05)

    th = threading.Thread(target=feed)
    th.start()
    while th.is_alive():
        win.process_events(0.01)
    win.process_events(0.3)
    assert win.frames_offered == 100
    assert win.frames_shown >= 2 and win.display_skipped + win.frames_shown == 100
    agp = grab(win.panels[("AGP", "physical")].widget)
    dna = grab(win.panels[("DNA", "virtual")].widget)
    assert agp.std() > 20 and dna.std() > 20, "a blank panel"
    # t = 49 (odd): AGP shows the left-to-right ramp, DNA the top-to-bottom one
    assert trend(agp, 1) > 0.9 and abs(trend(agp, 0)) < 0.5, (trend(agp, 1), trend(agp, 0))
    assert trend(dna, 0) > 0.9 and abs(trend(dna, 1)) < 0.5, (trend(dna, 0), trend(dna, 1))
    assert "VIRTUAL" in win.panels[("DNA", "virtual")].title
    comp = win.composite_image.image
    assert comp is not None and comp.shape[-1] == 3 and comp.std() > 0.1
    # the time slider goes back over what was acquired
    assert win.time_slider.maximum() == 49
    shown = [t for t, _, _ in win.history[("AGP", "physical")]]
    assert len(shown) >= 2, shown
    t_old = shown[0]
    win.time_slider.setValue(t_old)
    win.process_events(0.1)
    assert not win.live_box.isChecked()
    old = win.panels[("AGP", "physical")].image.image
    expect = right if t_old % 2 else down
    assert np.corrcoef(old.ravel(), expect.ravel())[0, 1] > 0.99
    win.live_box.setChecked(True)
    win.process_events(0.1)
    assert win.time_slider.value() == 49


@needs_gui
@pytest.mark.qt
def test_qc_flags_error_map_and_manual_levels() -> None:
    win = _window()
    right, down = gradients()
    win.offer(frame("DNA", 0, down, "virtual", qc={
        "nan_or_inf": True, "finite": False, "inconsistent_with_input": True,
        "saturated": False, "saturated_fraction": 0.0, "refocus_choice": "camera"}))
    win.process_events(0.2)
    flags = win.panels[("DNA", "virtual")].flags.toPlainText()
    # the flags the engines and the gate raise, by their names (QcFlag); nothing else
    assert flags == "QC: nan_or_inf, inconsistent_with_input", flags
    # a physical frame of the virtual channel (e.g. a fallback exposure): the error map, in
    # the virtual panel's error view
    truth = down.copy()
    truth[:100] += 500
    win.offer(frame("DNA", 0, truth, "physical"))
    win.process_events(0.2)
    t, e = win.error_maps["DNA"]
    assert t == 0 and e[:100].mean() > 0.05 and e[100:].mean() < 1e-6, \
        (e[:100].mean(), e[100:].mean())
    win.virtual_view.setCurrentText("error")
    win.process_events(0.1)
    assert np.array_equal(win.panels[("DNA", "virtual")].image.image, e)
    win.virtual_view.setCurrentText("prediction")
    # manual levels: choose the channel, drag the histogram's levels
    win.select_levels("AGP")
    win.offer(frame("AGP", 1, right))
    win.process_events(0.2)
    win.histogram.item.setLevels(1000, 2000)
    win.histogram.item.sigLevelChangeFinished.emit(win.histogram.item)
    assert win.panels[("AGP", "physical")].levels == (1000.0, 2000.0)
    assert not win.auto_levels.isChecked()
    win.offer(frame("AGP", 2, right))
    win.process_events(0.2)
    assert win.panels[("AGP", "physical")].shown_levels == (1000.0, 2000.0)
    win.auto_levels.setChecked(True)
    assert win.panels[("AGP", "physical")].levels is None
    # the composite follows each channel's on/off
    win.enabled[("DNA", "virtual")].setChecked(False)
    win.enabled[("DNA", "physical")].setChecked(False)
    only_agp = win.composite_image.image.copy()
    assert only_agp[..., 1].std() > 0.1   # AGP is green


@needs_gui
@pytest.mark.qt
def test_fidelity_trace_and_input_flags() -> None:
    """Sentinel pairs judged on another thread show as points of the channel's trace (the
    ones outside the band in red); the new QC flags show on the virtual panel."""
    from acquire_vf.acquisition import RunSignals, SentinelFidelity

    win = _window()
    signals = RunSignals()
    win.connect(signals)
    rows = [SentinelFidelity("DNA", t, 0, 0, p, 0.8, 0.02, ok)
            for t, p, ok in ((0, 24.0, True), (5, 23.5, True), (10, 14.0, False))]
    th = threading.Thread(target=lambda: [signals.fidelity.emit(r) for r in rows])
    th.start()
    th.join()
    _, down = gradients()
    win.offer(frame("DNA", 10, down, "virtual", qc={"input_dim": True,
                                                   "uncertainty_high": False}))
    win.process_events(0.3)
    assert win.fidelity.pairs_shown == 3
    (curve,) = win.fidelity._curves.values()
    xs, ys = curve.getData()
    assert list(xs) == [0, 5, 10] and list(ys) == [24.0, 23.5, 14.0]
    flags = win.panels[("DNA", "virtual")].flags.toPlainText()
    assert "input_dim" in flags and "uncertainty_high" not in flags, flags


@needs_gui
@pytest.mark.qt
def test_focus_trace_shows_estimates_truth_corrections_and_zscans() -> None:
    from acquire_vf.acquisition import (
        FocusCorrection,
        FocusEstimate,
        FocusZScan,
        RunSignals,
        SignCheck,
    )

    win = _window()
    assert not win.focus.box.isVisible()  # no closed-loop focus yet: no trace
    signals = RunSignals()
    win.connect(signals)
    events = [FocusZScan(0, 0, 11, 8.0, "first time point", 0.0, 8.0),
              SignCheck(0, 0, 4.0, 4.2, 0.7, True, True, 1.0, "the Z drive moves as assumed"),
              FocusEstimate(1, 0, "BF", 0.4, 0.4, 0.5, true_defocus_um=0.3),
              FocusEstimate(2, 0, "BF", -1.6, 1.6, 0.5, true_defocus_um=-1.5),
              FocusEstimate(2, 0, "AGP", None, 1.6, 0.5),  # the side untold: not plotted
              FocusCorrection(2, 0, 1.2)]
    th = threading.Thread(target=lambda: [signals.focus.emit(e) for e in events])
    th.start()
    th.join()
    _, down = gradients()
    win.offer(frame("AGP", 2, down))
    win.process_events(0.3)
    assert win.focus.box.isVisible() and win.focus.events_shown == 6
    xs, ys = win.focus._items["estimate p0"].getData()
    assert list(xs) == [1, 2] and list(ys) == [0.4, -1.6]
    assert list(win.focus._items["true p0"].getData()[1]) == [0.3, -1.5]
    assert list(win.focus._items["zscan p0"].getData()[0]) == [0]


@needs_gui
@pytest.mark.qt
@pytest.mark.slow
def test_closing_the_window_mid_run_20_times_stops_cleanly(tmp_path: Path) -> None:
    """A real demo run per close (one Micro-Manager for all), closed once frames are saved."""
    import pyqtgraph as pg

    from acquire_vf._session import run_session

    pg.mkQApp()  # timers need the application
    prof = make_profile(acquisition={"time_points": 400})
    for k in range(20):
        out = tmp_path / f"run{k}"
        close_when_saving(out)
        report = run_session(prof, out, quiet=True, display=True, on_close="stop")
        assert report["state"] == "cancelled", report["state"]
        assert 2 <= report["frames_acquired"] < 800, report["frames_acquired"]
        files = open_dataset(out)
        assert files[0].verify() == [] and len(files[0].records) == report["frames_acquired"]
        assert json.loads((out / "session.json").read_text())["errors"] == []


@needs_gui
@pytest.mark.qt
@pytest.mark.slow
def test_closing_with_continue_keeps_acquiring_headless(tmp_path: Path) -> None:
    import pyqtgraph as pg

    from acquire_vf._session import run_session

    pg.mkQApp()
    out = tmp_path / "run"
    close_when_saving(out)
    report = run_session(make_profile(acquisition={"time_points": 40}), out, quiet=True,
                         display=True, on_close="continue")
    assert report["state"] == "finished" and report["frames_acquired"] == 80, report


@needs_gui
@pytest.mark.qt
@pytest.mark.slow
def test_pause_and_stop_buttons_drive_the_run(tmp_path: Path) -> None:
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    from acquire_vf._session import run_session

    pg.mkQApp()
    seen: dict = {}

    def drive() -> None:
        live = getattr(main_window(), "live", None)
        if live is None or live.run.frames_acquired < 4:
            QtCore.QTimer.singleShot(20, drive)
            return
        if "paused" not in seen:
            live.pause_button.click()
            seen["paused"] = live.run.state.value
            QtCore.QTimer.singleShot(300, drive)
            return
        if "held" not in seen:
            seen["held"] = live.run.frames_acquired
            QtCore.QTimer.singleShot(300, drive)
            return
        seen["after"] = live.run.frames_acquired
        seen["status"] = live.status_label.text()
        live.stop_button.click()

    QtCore.QTimer.singleShot(20, drive)
    report = run_session(make_profile(acquisition={"time_points": 400}), tmp_path / "run",
                         quiet=True, display=True, on_close="stop", close_when_done=True)
    assert seen["paused"] == "paused", seen
    assert seen["after"] - seen["held"] <= 2, seen  # at most the frames already in flight
    assert report["state"] == "cancelled", report["state"]
    for part in ("fps", "latency p50", "queues: pipeline", "skipped: display",
                 "exposures saved"):
        assert part in seen["status"], seen["status"]


@needs_gui
@pytest.mark.slow
def test_demo_with_the_window_acquires_every_frame_as_without(tmp_path: Path) -> None:
    """Same raw frames with the display on and off, the demo hardware flat out (no engines or
    interval: the hardest case for the window). Speed is not asserted here (a timed assertion
    fails on a busy machine, not on a slow window): the rate ratio is measured over many pairs
    by ``scripts/perf_display.py`` and recorded in docs/performance.md; this run prints its
    own."""
    from acquire_vf.config import plain_demo_profile as plain_profile

    profile = plain_profile(tmp_path, time_points=150)
    rates: dict[str, float] = {}
    for mode in ("display", "headless"):
        out = tmp_path / mode
        flag = ["--display", "--close-when-done"] if mode == "display" else ["--headless"]
        r = run_cli("live", "--profile", str(profile), *flag, "--out", str(out), timeout=60,
                    env=OFFSCREEN)
        assert r.returncode == 0, r.stderr[-2000:]
        report = json.loads((out / "session.json").read_text())
        assert report["frames_acquired"] == report["frames_expected"] == 300
        assert report["errors"] == []
        rates[mode] = report["raw_fps"]
    print(f"display on/off raw-rate ratio, one pair: {rates['display'] / rates['headless']:.3f}")


@pytest.mark.slow
def test_demo_without_display_runs_headless_with_a_note(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = run_cli("demo", "--time-points", "2", "--out", str(tmp_path / "run"), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "running headless (no display found)" in r.stderr
    # not a terminal: no redrawn progress line, the last line of it once at the end
    assert "\r" not in r.stderr and "time point 2 of 2" in r.stderr
    r = run_cli("demo", "--display", "--time-points", "2", "--out", str(tmp_path / "r2"),
                env=env)
    assert r.returncode == DisplayUnavailable.exit_code
    assert "--display: no display found" in r.stderr


def _corner_frame(h: int = 240, w: int = 320) -> np.ndarray:
    """Dark, with a bright square at each corner (a tenth of the frame's height)."""
    img = np.full((h, w), 100, np.uint16)
    s = h // 10
    for ys in (slice(0, s), slice(h - s, h)):
        for xs in (slice(0, s), slice(w - s, w)):
            img[ys, xs] = 4000
    return img


def _corners_on_screen(grey: np.ndarray) -> list[tuple[float, float]]:
    """Centres of the white blobs of a rendered panel, as fractions of its size (not the
    titles' grey text, nor a virtual panel's orange border)."""
    from scipy import ndimage

    white = grey > 200
    labels, n = ndimage.label(white)
    h, w = grey.shape
    sizes = ndimage.sum(white, labels, range(1, n + 1))
    big = [i + 1 for i, size in enumerate(sizes) if size > 0.002 * h * w]
    centres = ndimage.center_of_mass(white, labels, big)
    return [(y / h, x / w) for y, x in centres]


@needs_gui
@pytest.mark.qt
def test_every_panel_shows_its_whole_frame_from_the_first_frame() -> None:
    """The demo's channels (3 measured, 2 refocused, 3 synthesised with their uncertainty),
    frames arriving over several redraws and the sentinels' measured panels added mid-run:
    the four corners of the frame are on screen in every panel, in its quadrants, and the
    frame fills the panel's width or height (aspect kept, not shrunk to a dot)."""
    from acquire_vf.display import LiveWindow

    virtual = [ChannelInfo(n, role="virtual") for n in
               ("AGP-refocused", "RNA-refocused", "DNA", "uncertainty:DNA", "ER", "Mito")]
    win = LiveWindow([ChannelInfo("AGP"), ChannelInfo("RNA"), ChannelInfo("BF"), *virtual],
                     on_close="stop", refresh_hz=50)
    win.window.show()
    win.process_events(0.1)
    img = _corner_frame()
    for t in range(3):
        for c in ("AGP", "RNA", "BF"):
            win.offer(frame(c, t, img))
            win.process_events(0.03)
        for c in ("AGP-refocused", "DNA", "ER", "Mito"):
            win.offer(frame(c, t, img, "virtual"))
        if t == 1:  # sentinels: measured frames of virtual channels, new panels mid-run
            for c in ("DNA", "ER", "Mito"):
                win.offer(frame(c, t, img))
        win.process_events(0.1)
    win.process_events(0.3)
    shown = [k for k in win.panels if k[0] != "RNA-refocused"]
    assert len(shown) == 10, shown
    for key in shown:
        centres = _corners_on_screen(grab(win.panels[key].widget))
        quads = {(y > 0.5, x > 0.5) for y, x in centres}
        assert len(centres) == 4 and len(quads) == 4, (key, centres)
        ys, xs = [c[0] for c in centres], [c[1] for c in centres]
        assert max(xs) - min(xs) > 0.5 or max(ys) - min(ys) > 0.5, (key, centres)


@needs_gui
@pytest.mark.qt
def test_virtual_panels_show_prediction_uncertainty_or_error_on_demand() -> None:
    """Uncertainty and error maps are views of the virtual panel, not panels of their own;
    the composite starts from the stains (not brightfield, not refocused copies)."""
    from acquire_vf.display import LiveWindow

    win = LiveWindow([ChannelInfo("AGP"), ChannelInfo("BF"), DNA,
                      ChannelInfo("AGP-refocused", role="virtual"),
                      ChannelInfo("uncertainty:DNA", role="virtual")],
                     on_close="stop", refresh_hz=50, composite_off=frozenset({"BF"}))
    win.window.show()
    assert ("uncertainty:DNA", "virtual") not in win.panels
    assert {k: c.isChecked() for k, c in win.enabled.items()} == {
        ("AGP", "physical"): True, ("BF", "physical"): False, ("DNA", "virtual"): True,
        ("AGP-refocused", "virtual"): False}
    right, down = gradients()
    spread = np.zeros_like(down)
    spread[:50] = 3000
    win.offer(frame("DNA", 0, down, "virtual"))
    win.offer(frame("uncertainty:DNA", 0, spread, "virtual"))
    win.process_events(0.2)
    panel = win.panels[("DNA", "virtual")]
    assert np.array_equal(panel.image.image, down)
    win.virtual_view.setCurrentText("uncertainty")
    win.process_events(0.1)
    assert np.array_equal(panel.image.image, spread)
    win.virtual_view.setCurrentText("error")
    win.process_events(0.1)
    assert panel.image.image is None and "not measured yet" in panel.flags.toPlainText()
    truth = down.copy()
    truth[:100] += 500
    win.offer(frame("DNA", 0, truth, "physical"))  # a sentinel exposure of the same time point
    win.process_events(0.2)
    assert ("DNA", "physical") in win.panels and not win.enabled[("DNA", "physical")].isChecked()
    e = panel.image.image
    assert e[:100].mean() > 0.05 and e[100:].mean() < 1e-6, (e[:100].mean(), e[100:].mean())
    assert "mean |error|" in panel.flags.toPlainText()
    win.virtual_view.setCurrentText("prediction")
    win.process_events(0.1)
    assert np.array_equal(panel.image.image, down)


@needs_gui
@pytest.mark.qt
@pytest.mark.slow
def test_twenty_runs_with_sentinels_and_error_maps_end_cleanly(tmp_path: Path) -> None:
    """The live window's crash (``bool_dealloc``, 4 of 12 demo runs) came from the Qt binding
    dropping a reference to True on every signal that carries one: 20 runs with engines,
    sentinels, uncertainty and the error view, each must end with its files whole and the
    count of True where it began (an aborted process fails the child pytest)."""
    import sys

    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    from acquire_vf._session import run_session
    from tests._helpers import verified_profile

    pg.mkQApp()
    # no interval between time points: the demo's 1 s would be two minutes of waiting over
    # the twenty runs, and a loaded machine then runs past the suite's time-out
    prof = verified_profile(acquisition={"time_points": 6, "interval_s": 0.0})
    before = sys.getrefcount(True)

    def error_view() -> None:  # the error maps drawn as soon as the window is up
        live = getattr(main_window(), "live", None)
        if live is None:
            QtCore.QTimer.singleShot(20, error_view)
        else:
            live.virtual_view.setCurrentText("error")

    for k in range(20):
        out = tmp_path / f"run{k}"
        QtCore.QTimer.singleShot(20, error_view)
        report = run_session(prof, out, quiet=True, display=True, on_close="stop",
                             screenshot=tmp_path / f"run{k}.png")
        assert report["state"] == "finished", (k, report["state"], report["errors"])
        assert report["verification"] and (out / f"run{k}.png").exists() is False
        assert (tmp_path / f"run{k}.png").stat().st_size > 0
        (ds,) = open_dataset(out)
        assert ds.verify() == [] and len(ds.records) >= report["frames_acquired"]
    lost = before - sys.getrefcount(True)
    print(f"references to True lost over 20 runs: {lost}")
    assert lost < 50, f"the Qt binding dropped {lost} references to True in 20 runs"


@needs_gui
@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGABRT", "SIGKILL"])
def test_a_window_that_dies_still_leaves_its_files_whole(tmp_path: Path, sig: str) -> None:
    """The live window's process killed mid-run (SIGABRT is what Python's fatal errors raise,
    as the Qt binding's bool_dealloc did; SIGKILL is kill -9), once the engine host holds its
    shared memory: the session's guard leaves the OME-XML, a session.json marked recovered,
    and no shared-memory block of that session."""
    import signal
    import subprocess
    import sys

    import tifffile

    from acquire_vf.engine_host import session_blocks
    from tests._helpers import ROOT

    out = tmp_path / "run"
    journal = out / "acquisition.ome.tif.journal"
    proc = subprocess.Popen([sys.executable, "-m", "acquire_vf", "demo", "--display",
                             "--time-points", "400", "--out", str(out)], cwd=ROOT,
                            env={**os.environ, **OFFSCREEN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (journal.is_file() and len(journal.read_text().splitlines()) > 12
                   and session_blocks(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 60
    while not (out / "session.json").is_file():
        assert time.monotonic() < deadline, "the guard wrote no session.json"
        time.sleep(0.1)
    session = json.loads((out / "session.json").read_text())
    assert session["state"] == "recovered" and session["frames_acquired"] > 0
    assert session["recovered"]["by"] == "the session's guard"
    with tifffile.TiffFile(out / "acquisition.ome.tif") as tf:
        assert tf.ome_metadata is not None and "virtual:DNA" in tf.ome_metadata
    (ds,) = open_dataset(out)
    assert ds.verify() == []
    assert session_blocks(proc.pid) == []


@needs_gui
@pytest.mark.qt
def test_twelve_channels_fit_a_full_hd_screen_without_scrolling() -> None:
    """6 measured and 6 virtual channels (each with uncertainty) on a 1920 x 1080 screen: the
    window fits it, every panel keeps at least its minimum size, nothing scrolls."""
    from acquire_vf.display import LiveWindow
    from acquire_vf.display._layout import MIN_PANEL_PX

    names = ("AGP", "RNA", "BF", "DNA2", "Actin", "Tub")
    virtual = [ChannelInfo(n, role="virtual") for n in ("DNA", "ER", "Mito", "AGP-refocused",
                                                         "RNA-refocused", "Golgi")]
    win = LiveWindow([ChannelInfo(n) for n in names] + virtual
                     + [ChannelInfo(f"uncertainty:{v.name}", role="virtual") for v in virtual],
                     on_close="stop", refresh_hz=50)
    assert len(win.panels) == 12
    w, h = win.grid.window_size((1920, 1080))
    assert w <= 1920 and h <= 1080
    win.window.resize(w, h)
    win.window.show()
    win.process_events(0.3)
    for key, panel in win.panels.items():
        size = panel.widget.size()
        assert size.width() >= MIN_PANEL_PX[0] and size.height() >= MIN_PANEL_PX[1], (key, size)
    assert not win.grid.widget.verticalScrollBar().isVisible()


@needs_gui
@pytest.mark.qt
def test_a_displayed_run_collects_cycles_on_the_gui_thread_only(tmp_path: Path) -> None:
    """Threads allocate throughout a run; a cycle collected in one of them can free a Qt
    object off the GUI thread and crash Qt. Every collection in a displayed run happens on
    the main thread, and automatic collection is back on when the run ends."""
    import gc

    import pyqtgraph as pg

    from acquire_vf._session import run_session

    pg.mkQApp()
    threads: list[str] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.callbacks.append(seen)
    try:
        report = run_session(make_profile(acquisition={"time_points": 6}), tmp_path / "run",
                             quiet=True, display=True, close_when_done=True)
    finally:
        gc.callbacks.remove(seen)
    assert report["state"] == "finished", report["state"]
    assert gc.isenabled()
    assert len(threads) >= 2 and set(threads) == {threading.main_thread().name}, threads
