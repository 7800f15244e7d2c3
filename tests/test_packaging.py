"""The distribution: one import root, a light import, a CLI whose every command has --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests._helpers import ROOT, run_cli

HEAVY = ("torch", "tensorrt", "PySide6", "pyqtgraph", "onnxruntime", "pycromanager")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(out), str(ROOT)], check=True, capture_output=True)
    (found,) = out.glob("acquire_vf-*.whl")
    return found


@pytest.mark.slow
def test_wheel_has_only_acquire_vf_with_its_shipped_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == {"acquire_vf"}, tops
    for shipped in ("hardware_profiles/demo.toml", "engines/cps_dna.onnx", "engines/cps_dna.json",
                    "training/cps_dna.toml"):
        assert f"acquire_vf/_shipped/{shipped}" in names, shipped


@pytest.mark.slow
def test_the_wheel_runs_the_demo_from_a_fresh_environment_outside_the_checkout(
        wheel: Path, tmp_path: Path) -> None:
    """pip install of the wheel (not editable) into a new virtual environment, then the demo
    from a folder that is not the checkout: profiles and engines come from the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--no-compile",  # bytecode for the modules the demo imports only
                          str(wheel), "-c", str(ROOT / "constraints.txt")],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ACQUIRE_VF_CACHE"] = str(tmp_path / "cache")
    res = subprocess.run([str(venv / "bin" / "acquire-vf"), "demo", "--headless",
                          "--time-points", "2", "--out", "run"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    session = json.loads((work / "run" / "session.json").read_text())
    assert session["errors"] == [] and session["virtual_frames"] > 0
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import acquire_vf._paths as p; print(p.IN_CHECKOUT, "
                            "p.shipped('engines'))"], cwd=work, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert where[0] == "False" and "site-packages" in where[1]


def test_import_is_light() -> None:
    code = ("import sys, acquire_vf, acquire_vf.config, acquire_vf.storage; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def _commands() -> list[list[str]]:
    from acquire_vf._cli import app

    cmds: list[list[str]] = [[]]
    for c in app.registered_commands:
        cmds.append([c.name or c.callback.__name__])  # type: ignore[union-attr]
    for g in app.registered_groups:
        cmds.append([g.name])  # type: ignore[list-item]
        cmds += [[g.name, c.name] for c in g.typer_instance.registered_commands]  # type: ignore
    return cmds


def test_every_command_has_help() -> None:
    """In-process (typer's runner): every registered command, including ones added later."""
    from typer.testing import CliRunner

    from acquire_vf._cli import app

    cmds = _commands()
    assert ["replay"] in cmds and ["profile", "validate"] in cmds
    for cmd in cmds:
        r = CliRunner().invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0, (cmd, r.output)
        assert "Usage" in r.output, cmd
        # flags take no value: a "<bool>" placeholder made users type --headless true (the
        # root's own --help line is typer's, and nobody gives --help a value)
        flags = [ln for ln in r.output.splitlines() if "--help" not in ln]
        assert not any("<bool>" in ln or "BOOLEAN" in ln for ln in flags), (cmd, r.output)


def test_cli_error_is_one_line_without_traceback() -> None:
    r = run_cli("live", "--profile", "no-such-profile", timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: profile 'no-such-profile' not found")
    assert "Traceback" not in r.stderr
