"""Raw frame rate of the demo with the live window on versus off, in paired runs.

    .venv/bin/python scripts/perf_display.py [--pairs 5] [--time-points 150]

Each pair runs ``acquire-vf demo --display --close-when-done`` (offscreen Qt) and
``acquire-vf demo --headless`` back to back, on the plain demo hardware (no engines, no
interval: the camera runs flat out, the hardest case for the window). The rate is the one
``session.json`` reports (from Micro-Manager's frame timestamps). Prints each pair's ratio and
the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_profile(folder: Path, time_points: int = 100_000) -> Path:
    """The demo hardware and specimen without engines, drift or interval (``Profile.bare``,
    10 ms exposures), as a profile file for ``acquire-vf live --profile``."""
    from acquire_vf.config import load_profile

    d = load_profile("demo").bare(exposure_ms=10).model_dump(mode="json", exclude_none=True)
    d["name"] = "demo-plain"
    d["description"] = "The demo hardware and specimen: no engines, no focus drift, no interval."
    del d["virtual_channels"]  # none; left out so a profile built on this can add some
    d["acquisition"]["time_points"] = time_points
    path = folder / "demo-plain.toml"
    path.write_text("\n".join(toml_lines(d)) + "\n")
    return path


def toml_lines(d: dict, prefix: str = "") -> list[str]:
    """A JSON-like dict as TOML: values first, then tables and arrays of tables."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
            tables.append((f"{prefix}{k}", v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    for name, v in tables:
        for item in [v] if isinstance(v, dict) else v:
            lines += [f"[{name}]" if isinstance(v, dict) else f"[[{name}]]"]
            lines += toml_lines(item, name + ".")
    return lines


def rate(profile: Path, out: Path, flags: list[str], time_points: int) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"}
    prof = f"{profile}"
    subprocess.run([sys.executable, "-m", "acquire_vf", "live", "--profile", prof, *flags,
                    "--out", str(out)], check=True, env=env, cwd=ROOT,
                   capture_output=True, timeout=600)
    report = json.loads((out / "session.json").read_text())
    assert report["frames_acquired"] == report["frames_expected"], report
    return float(report["raw_fps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--time-points", type=int, default=150)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profile = plain_profile(folder, a.time_points)
        ratios = []
        for k in range(a.pairs):
            on = rate(profile, folder / f"on{k}", ["--display", "--close-when-done"],
                      a.time_points)
            off = rate(profile, folder / f"off{k}", ["--headless"], a.time_points)
            ratios.append(on / off)
            print(f"pair {k + 1}: window {on:.1f} fps, headless {off:.1f} fps, "
                  f"ratio {on / off:.3f}", flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} over {a.pairs} pairs "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
