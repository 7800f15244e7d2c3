"""A newcomer's journeys, run as the README writes them: its command blocks marked
``<!-- journey: NAME -->`` are extracted (never copied here) and run by bash, in order, from a
scratch folder outside the checkout, with the environment's ``acquire-vf`` on the path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import ROOT

BIN = Path(sys.executable).parent


def journey(name: str) -> str:
    """The README's command block that follows ``<!-- journey: NAME -->``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- journey: {re.escape(name)} -->\n```bash\n(.*?)\n```", readme, re.S)
    assert m, f"README lost its '{name}' journey block"
    return m.group(1)


def run(script: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("journey")
    assert ROOT not in folder.parents  # outside the checkout
    return folder


@pytest.mark.slow
def test_own_data_to_own_engine_to_a_live_run_as_the_readme_says(scratch: Path) -> None:
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    res = run(journey("own-engine"), scratch)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    card = json.loads((scratch / "engines" / "mine.json").read_text())
    prov = card["training"]["provenance"]
    assert prov["recipe_path"] == "mine.toml"  # the recipe that was run, as typed
    assert Path(prov["recipe_path_absolute"]) == (scratch / "mine.toml").resolve()
    assert Path(prov["data_path"]) == (scratch / "data" / "mine").resolve()
    assert card["training"]["command"].startswith("acquire-vf train mine.toml")
    metrics = json.loads((scratch / "reports" / "mine" / "metrics.json").read_text())
    assert "why" not in metrics.get("linear_baseline", {}), metrics["linear_baseline"]
    session = json.loads((scratch / "runs" / "first-live" / "session.json").read_text())
    made = [c["name"] for c in session["channels"] if c["role"] == "virtual"]
    assert "DNA-mine" in made and session["errors"] == []
    missing = session["missing_virtual_planes"]  # in focus: not refocused, said so
    assert missing["AGP-refocused"]["missing"] >= 1
    assert (scratch / "first-live.png").stat().st_size > 10_000


RIG_MISTAKES = {
    "an engine whose inputs the rig does not have": (
        '\n[[virtual_channels]]\nname = "DAPI"\nengine = "{engines}/mda_phc_dapi.onnx"\n'
        'inputs = ["AGP"]\n', "expects input channels ['PhC']"),
    "an engine file that is not there": (
        '\n[[virtual_channels]]\nname = "DNA"\nengine = "engines/nowhere.onnx"\n'
        'inputs = ["AGP", "RNA"]\n', "nowhere.onnx"),
    "on_failure = expose without how to expose": (
        '\n[[virtual_channels]]\nname = "DNA"\nengine = "{engines}/cps_dna.onnx"\n'
        'inputs = ["AGP", "RNA"]\non_failure = "expose"\n', "preset"),
    "a Micro-Manager folder that does not exist": (
        None, "mm_dir"),
}


@pytest.mark.slow
def test_a_rig_profile_from_the_template_and_each_mistake_validate_names(scratch: Path) -> None:
    res = run(journey("rig"), scratch, timeout=120)
    assert res.returncode == 0, res.stderr  # the template as shipped validates
    base = (scratch / "my-rig.toml").read_text()
    engines = (ROOT / "engines").as_posix()
    said = {}
    for what, (extra, words) in RIG_MISTAKES.items():
        text = base + extra.format(engines=engines) if extra else base.replace(
            'kind = "attach"\nport = 4827',
            'kind = "headless"\nmm_dir = "/nowhere/Micro-Manager"\n'
            'config_file = "MMConfig_rig.cfg"')
        assert text != base, what
        (scratch / "bad.toml").write_text(text)
        bad = run("acquire-vf profile validate --here bad.toml", scratch, timeout=120)
        assert bad.returncode != 0, f"validate passed {what}"
        assert words in bad.stderr and "Traceback" not in bad.stderr, (what, bad.stderr)
        said[what] = bad.stderr
    if not _gpu():  # the template's fp16 cannot run on this machine's CPU fallback: said so
        assert "ONNX Runtime on CPU runs fp32 only, profile asks for fp16" in said[
            "an engine whose inputs the rig does not have"]


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_profile_copy_keeps_engines_found_from_the_new_folder(scratch: Path) -> None:
    from tests._helpers import cli_here

    dest = scratch / "deep" / "mine.toml"
    res = cli_here("profile", "copy", "demo", str(dest))
    assert res.returncode == 0, res.stderr
    from acquire_vf.config import load_profile

    prof = load_profile(dest)
    assert all(Path(v.engine).is_file() for v in prof.virtual_channels)
    again = cli_here("profile", "copy", "demo", str(dest))
    assert again.returncode != 0 and "exists" in again.stderr
    shutil.rmtree(scratch / "deep")


def test_a_users_own_profile_is_found_by_name(scratch: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from acquire_vf.config import copy_profile, load_profile, resolve_profile_path

    monkeypatch.setenv("ACQUIRE_VF_PROFILES", str(scratch / "profiles"))
    copy_profile(resolve_profile_path("demo"), scratch / "profiles" / "my-scope.toml")
    assert resolve_profile_path("my-scope") == scratch / "profiles" / "my-scope.toml"
    assert load_profile("my-scope").name == "my-scope"  # the copy's own name, not the template's


@pytest.mark.slow
def test_the_readme_python_example_runs_as_a_library(scratch: Path) -> None:
    """The README's ``<!-- python: library -->`` block, run as a script from a folder outside
    the checkout: a demo run through ``acquire_vf.acquire`` with frame callbacks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- python: library -->\n```python\n(.*?)\n```", readme, re.S)
    assert m, "README lost its Python example"
    (scratch / "example.py").write_text(m.group(1))
    res = subprocess.run([sys.executable, "example.py"], cwd=scratch, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    session = json.loads((scratch / "run-from-python" / "session.json").read_text())
    physical = session["frames_acquired"]
    assert last == (f"{{'physical': {physical}, 'virtual': {session['virtual_frames']}}} "
                    f"{physical} {session['virtual_frames']} []"), last
    assert physical >= 3 * 3 and session["virtual_frames"] > 0
