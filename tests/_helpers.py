"""What tests share that is not a fixture: the repository's root, profiles built from the
demo's, the CLI in a subprocess or in this process, and hand-built ONNX engines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from acquire_vf.config import PROFILES_DIR, Profile, profile_from_dict

ROOT = Path(__file__).resolve().parents[1]


def shipped_demo_dict() -> dict[str, Any]:
    """The shipped demo profile as it is (engines, focus drift, a time point a second)."""
    return tomllib.loads((PROFILES_DIR / "demo.toml").read_text())


def demo_dict() -> dict[str, Any]:
    """The demo hardware without the shipped engines, drift or interval (``Profile.bare``,
    10 ms exposures): the plain base that tests add to."""
    from acquire_vf.config import load_profile

    return load_profile("demo").bare(exposure_ms=10).model_dump(mode="json", exclude_none=True)


def make_profile(**updates: Any) -> Profile:
    """The demo profile with ``updates`` merged in (nested dicts merge, other values replace;
    ``connection`` is replaced whole, since each kind has its own fields)."""
    base = demo_dict()
    if "connection" in updates:
        base.pop("connection")
    from acquire_vf.config import merged

    return profile_from_dict(merged(base, updates), source="test profile")


def verified_profile(**updates: Any) -> Profile:
    """The shipped demo profile (engines, ``[verification]``) with ``updates`` merged in, on
    the in-memory backend at 256 x 256 unless ``connection`` says otherwise, without drift,
    refocusing by the focus score (``when_defocused``) so that verification is tested apart
    from closed-loop focus (so without the brightfield channel that only serves it)."""
    from acquire_vf.config import demo_variant, merged

    fluorescence = [c for c in shipped_demo_dict()["channels"] if c["name"] != "BF"]
    return demo_variant(merged({"autofocus": {"policy": "when_defocused"},
                                "channels": fluorescence}, updates), source="test profile")


def run_cli(*args: str, timeout: float = 180, env: dict[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``acquire-vf ARGS`` in a fresh interpreter (its own Micro-Manager).

    A child that outlives ``timeout`` gets SIGABRT, so faulthandler prints where every thread
    was, and the test fails with that in its message."""
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    cmd = [sys.executable, "-m", "acquire_vf", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=full_env, cwd=kw.pop("cwd", ROOT), **kw) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            try:
                out, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            pytest.fail(f"acquire-vf {' '.join(args)} hung for {timeout} s; its threads:\n"
                        f"{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def onnx_engine(path: Path, graph_nodes, inputs: int = 1, *, multiple_of: int = 1,
                low: float = 0.0, high: float = 65535.0, extra_inits=(),
                names: tuple[str, ...] | None = None) -> Path:
    """A hand-built ONNX graph with a model card, for behaviour the U-Net cannot show."""
    import onnx
    from onnx import TensorProto, helper

    from acquire_vf.card import ModelCard, Normalisation, sha256_file

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", inputs, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1, "h", "w"])
    graph = helper.make_graph(graph_nodes, "g", [x], [y], initializer=list(extra_inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    names = list(names or (f"in{i}" for i in range(inputs)))
    norm = Normalisation(low=low, high=high)
    ModelCard(name=path.stem, task="synthesis", inputs=tuple(names), output="out",
              normalisation={**{n: norm for n in names}, "out": norm}, tile=64, overlap=16,
              multiple_of=multiple_of, preset="test", width=1, depth=0, parameters=0,
              gflop_per_256=0.0, onnx_sha256=sha256_file(path), opset=18).save(path)
    return path


def cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``acquire-vf ARGS`` in this process, as ``main()`` does (exit code, stdout, stderr).

    For commands that fail or finish before any hardware, engine or Qt is touched (argument
    and output checks, profile validation): a subprocess would add 0.7 s of start-up each."""
    import contextlib
    import io

    from acquire_vf._cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["acquire-vf", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def reap(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """A child a test started: killed if it still runs, waited for, its stderr closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()

