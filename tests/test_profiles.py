"""Hardware profiles: the shipped ones validate; typos and wrong types get one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from acquire_vf._errors import ProfileError
from acquire_vf.config import PROFILES_DIR, load_profile
from tests._helpers import cli_here, make_profile

SHIPPED = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def test_three_profiles_are_shipped() -> None:
    assert {"demo", "workstation-rtx", "jetson-orin"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads(name: str) -> None:
    prof = load_profile(name)
    assert prof.name == name
    assert prof.channels


def test_bare_profile_keeps_the_hardware_without_engines_drift_or_interval() -> None:
    prof = load_profile("demo")
    assert prof.virtual_channels and prof.refocus_engines() and prof.acquisition.interval_s > 0
    bare = prof.bare(exposure_ms=10)
    assert bare.virtual_channels == () and bare.refocus_engines() == {}
    assert bare.specimen.focus_drift_um == 0 and bare.acquisition.interval_s == 0
    # every channel but brightfield, which only served the defocus estimator
    assert prof.autofocus.estimators.keys() == {"BF"}
    assert [(c.name, c.exposure_ms) for c in bare.channels] == [
        (c.name, 10) for c in prof.channels if c.name != "BF"]
    assert bare.specimen.stains == prof.specimen.stains
    assert bare.autofocus.zscan_planes == prof.autofocus.zscan_planes  # same protocol count
    assert prof.bare().channels == prof.channels[:2]


def test_profiles_are_frozen() -> None:
    prof = load_profile("demo")
    with pytest.raises(Exception, match="frozen"):
        prof.name = "other"  # type: ignore[misc]


BAD = [
    ("typo-top", "nmae = 'x'\n", "unknown key 'nmae' (did you mean 'name'?)"),
    ("typo-nested", "[camera]\npixel_sise_um = 1.0\n",
     "unknown key 'camera.pixel_sise_um' (did you mean 'pixel_size_um'?)"),
    ("typo-union", "[connection]\nkind = 'attach'\nprot = 4827\n",
     "unknown key 'connection.attach.prot' (did you mean 'port'?)"),
    ("bad-kind", "[connection]\nkind = 'remote'\n",
     "'connection.kind' is 'remote'; expected one of 'demo', 'headless', 'attach'"),
    ("wrong-type", "[camera]\nbit_depth = 'sixteen'\n",
     "'camera.bit_depth' expected a valid integer"),
    ("out-of-range", "[camera]\nbit_depth = 32\n",
     "'camera.bit_depth' expected less than or equal to 16, got 32"),
    ("bad-overlap", "[tiling]\ntile = 128\noverlap = 64\n",
     "tiling: overlap 64 must be less than half the tile 128"),
    ("af-no-engine", "[autofocus]\npolicy = 'always'\n",
     "autofocus.always: autofocus policy 'always' needs 'engine'"),
    # each policy takes only its own settings: closed loop's under 'off' is named, not ignored
    ("af-closed-loop-key-when-off", "[autofocus]\npolicy = 'off'\ndeadband_um = 0.3\n",
     "unknown key 'autofocus.off.deadband_um' (valid: hardware_autofocus, policy, zscan_channel"),
    ("af-typo-in-closed-loop", "[autofocus]\npolicy = 'closed_loop'\ndeadband = 0.3\n",
     "unknown key 'autofocus.closed_loop.deadband' (did you mean 'deadband_um'?)"),
    ("virtual-bad-input",
     "[[virtual_channels]]\nname = 'DNA'\nengine = 'x.onnx'\ninputs = ['AGP', 'Mito']\n",
     "virtual channel 'DNA' takes inputs ['AGP', 'Mito'], but ['Mito'] are not physical"),
    ("duplicate-channel",
     "[[virtual_channels]]\nname = 'AGP'\nengine = 'x.onnx'\ninputs = ['RNA']\n",
     "channel names must be unique; repeated: AGP"),
    ("not-toml", "[camera\n", "not valid TOML"),
]


def _write(tmp_path: Path, extra: str) -> Path:
    from acquire_vf.config import plain_demo_profile as plain_profile

    base = plain_profile(tmp_path).read_text()  # the demo hardware, no engines
    # strip the sections the case redefines so TOML does not reject a duplicate table
    for section in ("[camera]", "[connection]", "[tiling]", "[autofocus]", "[compute]"):
        if section in extra and section in base:
            start = base.index(section)
            end = base.find("\n[", start + 1)
            base = base[:start] + (base[end + 1:] if end != -1 else "")
    path = tmp_path / "bad.toml"
    path.write_text(extra + "\n" + base if not extra.startswith("[") else base + "\n" + extra)
    return path


@pytest.mark.parametrize(("case", "extra", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_profile_names_file_and_key(tmp_path: Path, case: str, extra: str,
                                        expected: str) -> None:
    path = _write(tmp_path, extra)
    with pytest.raises(ProfileError) as ei:
        load_profile(path)
    msg = str(ei.value)
    assert str(path) in msg
    assert expected in msg
    assert "\n" not in msg


def test_validate_cli_ok_and_bad(tmp_path: Path) -> None:
    ok = cli_here("profile", "validate", "demo")
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = cli_here("profile", "validate", str(_write(tmp_path, "nmae = 'x'\n")))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean 'name'" in bad.stderr


def test_validate_reports_missing_engine_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[virtual_channels]]\nname = 'DNA'\nengine = 'missing.onnx'\n"
                            "inputs = ['AGP', 'RNA']\n")
    r = cli_here("profile", "validate", str(path))
    assert r.returncode == 2
    assert "virtual channel 'DNA': engine file not found" in r.stderr
    assert "missing.onnx" in r.stderr


def test_validate_catches_what_live_would_refuse(tmp_path: Path) -> None:
    """Engine inputs that differ from the card's, fp16 where only ONNX Runtime on the CPU can
    run, a Micro-Manager folder that does not exist: each reported, before any hardware."""
    from tests._helpers import ROOT

    dna = (ROOT / "engines" / "cps_dna.onnx").as_posix()
    path = _write(tmp_path, "[connection]\nkind = 'headless'\nmm_dir = '/no/such/mm'\n"
                            "config_file = 'x.cfg'\n"
                            f"[[virtual_channels]]\nname = 'DNA'\nengine = '{dna}'\n"
                            "inputs = ['RNA', 'AGP']\n[compute]\nprecision = 'fp16'\n")
    r = cli_here("profile", "validate", str(path), "--here")
    assert r.returncode == 2, r.stdout
    assert "3 problem(s)" in r.stderr, r.stderr
    assert "connection.mm_dir" in r.stderr and "/no/such/mm" in r.stderr
    assert "expects input channels ['AGP', 'RNA'], the profile gives ['RNA', 'AGP']" in r.stderr
    assert "cannot run it here" in r.stderr and "fp16" in r.stderr


def test_engine_paths_resolve_against_profile_folder(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[virtual_channels]]\nname = 'DNA'\nengine = 'e/dna.onnx'\n"
                            "inputs = ['AGP']\n")
    prof = load_profile(path)
    assert prof.virtual_channels[0].engine == (tmp_path / "e" / "dna.onnx").resolve()


def test_absolute_engine_paths_are_kept(tmp_path: Path) -> None:
    engine = tmp_path / "abs" / "refocus.onnx"
    path = _write(tmp_path, f"[autofocus]\npolicy = 'always'\nengine = '{engine}'\n"
                            f"[[virtual_channels]]\nname = 'DNA'\nengine = '{engine}'\n"
                            "inputs = ['AGP']\n")
    prof = load_profile(path)
    assert prof.autofocus.engine == engine and prof.virtual_channels[0].engine == engine


def test_expose_fallback_needs_preset() -> None:
    with pytest.raises(ProfileError, match="on_failure = 'expose' needs 'preset'"):
        make_profile(virtual_channels=[{"name": "DNA", "engine": "x.onnx", "inputs": ["AGP"],
                                        "on_failure": "expose"}])


def test_validate_judges_the_profile_and_with_here_the_machine(tmp_path: Path) -> None:
    """A GPU rig's profile (fp16, TensorRT first) validates on a machine without that GPU:
    the profile is sound; ``--here`` asks whether this machine can run it. An ok result prints
    no warning about backends passed over (it printed 'TensorRT is not installed')."""
    from tests._helpers import ROOT

    dna = (ROOT / "engines" / "cps_dna.onnx").as_posix()
    path = _write(tmp_path, f"[[virtual_channels]]\nname = 'DNA'\nengine = '{dna}'\n"
                            "inputs = ['AGP', 'RNA']\n[compute]\nprecision = 'fp16'\n"
                            "backends = ['tensorrt', 'onnxruntime']\n")
    r = cli_here("profile", "validate", str(path))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "not checked against this machine (--here does)" in r.stdout
    ok = cli_here("profile", "validate", "demo", "--here")
    assert ok.returncode == 0 and "this machine can run its engines" in ok.stdout
    assert ok.stderr.strip() == "", ok.stderr
