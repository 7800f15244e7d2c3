"""Micro-Manager connection: the demo config loads; every failure is one line, in bounded time."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from acquire_vf._errors import MicroscopeError
from acquire_vf.backends import check_profile_against_hardware, connect
from tests._helpers import make_profile, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_config_is_the_real_democamera(microscope) -> None:
    core = microscope.core
    assert microscope.mode == "demo"
    assert core.get_camera_device() == "Camera"
    assert core.get_device_library(core.get_camera_device()) == "DemoCamera"
    assert {"DAPI", "FITC", "Rhodamine", "Cy5"} <= set(core.get_available_configs("Channel"))


def test_reconnect_reuses_the_running_core(microscope) -> None:
    again = connect(make_profile())
    assert again.core is microscope.core


@pytest.mark.slow
def test_attach_to_nothing_fails_fast_with_one_line(tmp_path: Path, plain_demo: Path) -> None:
    port = _free_port()
    prof = plain_demo.read_text().replace(
        'kind = "demo"\nconfig_file = "MMConfig_demo.cfg"\ntimeout_s = 30.0',
        f'kind = "attach"\nport = {port}\ntimeout_s = 25.0')
    assert 'kind = "attach"' in prof
    path = tmp_path / "attach.toml"
    path.write_text(prof)
    t0 = time.monotonic()
    r = run_cli("live", "--profile", str(path), "--headless", "--out", str(tmp_path / "o"),
                timeout=60)
    # nothing listens on the port: refused at once, not after polling for timeout_s
    assert time.monotonic() - t0 < 20, "an unreachable Micro-Manager must not hang"
    assert r.returncode == 3
    assert r.stderr.strip() == (
        f"error: no Micro-Manager answered on localhost:{port}: is the application running "
        f"with Tools > Options > 'Run server on port {port}' enabled?")


def test_attach_refused_beside_in_process_core(microscope) -> None:
    prof = make_profile(connection={"kind": "attach", "port": _free_port(), "timeout_s": 1.0})
    with pytest.raises(MicroscopeError, match="attach mode needs its own process"):
        connect(prof)


def test_headless_with_missing_folder(tmp_path: Path) -> None:
    prof = make_profile(connection={"kind": "headless", "mm_dir": str(tmp_path / "nope"),
                                    "config_file": "MMConfig_rig.cfg"})
    with pytest.raises(MicroscopeError, match="Micro-Manager folder not found"):
        connect(prof)


def test_headless_with_missing_config(tmp_path: Path) -> None:
    prof = make_profile(connection={"kind": "headless", "mm_dir": str(tmp_path),
                                    "config_file": "MMConfig_rig.cfg"})
    with pytest.raises(MicroscopeError, match="config file not found: .*MMConfig_rig.cfg"):
        connect(prof)


def test_the_demo_config_gains_the_presets_its_simulated_stains_need(microscope) -> None:
    """The demo config has no ER preset; the demo profile's ER channel is exposed at
    sentinels, so connecting defined it, with the device settings of the first preset."""
    core = microscope.core
    names = list(core.get_available_configs("Channel"))
    assert "ER" in names
    template = next(n for n in names if n != "ER")
    er = core.get_config_data("Channel", "ER")
    assert er.size() > 0
    assert er.getVerbose() == core.get_config_data("Channel", template).getVerbose()


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ([{"name": "AGP", "preset": "Cy3", "exposure_ms": 10}],
         # BF and ER: the demo profile's simulated stains, defined at start (test below)
         "channel 'AGP': preset 'Cy3' not in config group 'Channel' (has: BF, Cy5, DAPI, ER, "
         "FITC, Rhodamine)"),
        ([{"name": "AGP", "group": "Filters", "preset": "Cy5", "exposure_ms": 10}],
         "channel 'AGP': config group 'Filters' not in Micro-Manager"),
    ],
    ids=["unknown-preset", "unknown-group"],
)
def test_profile_that_does_not_fit_the_hardware(microscope, channels, expected) -> None:
    with pytest.raises(MicroscopeError) as ei:
        check_profile_against_hardware(
            microscope, make_profile(channels=channels, specimen={"kind": "camera"}))
    assert expected in str(ei.value)


def test_bit_depth_mismatch(microscope) -> None:
    with pytest.raises(MicroscopeError, match="profile says camera.bit_depth = 12, "
                                              "Micro-Manager's camera reports 16"):
        check_profile_against_hardware(microscope, make_profile(camera={"bit_depth": 12}))
