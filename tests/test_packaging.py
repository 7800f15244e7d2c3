"""The distribution: one import root, a light import, a CLI whose every command has --help."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

HEAVY = ("torch", "tensorrt", "PySide6", "pyqtgraph", "onnxruntime", "pycromanager")


@pytest.mark.slow
def test_wheel_has_only_acquire_vf(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("acquire_vf-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == {"acquire_vf"}, tops


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
