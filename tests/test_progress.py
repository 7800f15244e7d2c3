"""A headless run says how it is going: a redrawn line on a terminal, a line per interval
elsewhere, and a line for each change (z-scan, switch to physical, error, pause)."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from acquire_vf._session import run_session
from acquire_vf.acquisition import RunProgress
from acquire_vf.config import demo_variant
from tests._helpers import ROOT

pytestmark = pytest.mark.slow


def test_without_a_terminal_one_plain_line_per_interval_and_each_change(tmp_path: Path) -> None:
    """The demo's closed loop on the in-memory backend, 0.1 s a time point, the interval 0.3 s
    (a minute in use): plain lines, never redrawn, several of them, a z-scan line, and a last
    line at the end of the plan."""
    prof = demo_variant({"acquisition": {"time_points": 20, "interval_s": 0.1}})
    out = io.StringIO()
    reporters: list[RunProgress] = []

    def attach(run) -> None:
        reporters.append(RunProgress(run, stream=out, tty=False, log_every_s=0.3))
        reporters[0].start()

    report = run_session(prof, tmp_path / "run", quiet=True, on_run=attach)
    reporters[0].stop()
    text = out.getvalue()
    print(text)
    assert report["state"] == "finished"
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    periodic = [ln for ln in lines if "time point" in ln and " of 20 " in ln]
    assert len(periodic) >= 3, lines
    assert "time point 20 of 20" in periodic[-1] and "DNA trusted" in periodic[-1]
    assert any("z-scan at time point 0, position 0: first time point" in ln for ln in lines)


def test_a_headless_demo_in_a_terminal_redraws_its_progress_line(tmp_path: Path) -> None:
    """``acquire-vf demo --headless`` on a pseudo-terminal, the real Micro-Manager demo."""
    main, sub = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acquire_vf", "demo", "--headless", "--time-points", "4",
         "--out", str(tmp_path / "run")], stdin=subprocess.DEVNULL, stdout=sub, stderr=sub,
        cwd=ROOT, env=env)
    os.close(sub)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=180) == 0
    os.close(main)
    text = b"".join(chunks).decode(errors="replace")
    redrawn = [part for part in text.split("\r") if "time point" in part]
    assert len(redrawn) >= 2, text[-3000:]
    last = redrawn[-1]
    for part in ("time point 4 of 4", "elapsed", "left", "frames/s", "virtual", "made",
                 "DNA trusted", "focus"):
        assert part in last, last
    assert "z-scan at time point 0" in text


@pytest.mark.parametrize("n", [1, 2])
def test_zscan_exposures_and_the_zscans_listed_agree(tmp_path: Path, n: int) -> None:
    """session.json counted 11 z-scan exposures while ``focus.zscans`` was empty (a run that
    ended inside its z-scan): every z-scan whose exposures were taken is listed, finished or
    not, and their planes add up to the exposures."""
    prof = demo_variant({"acquisition": {"time_points": n}})
    rep = run_session(prof, tmp_path / "run", quiet=True)
    taken = rep["light_dose"]["exposures_by_reason"].get("zscan", 0)
    listed = rep["focus"]["zscans"]
    assert taken > 0 and sum(z["planes"] for z in listed) == taken, (taken, listed)
