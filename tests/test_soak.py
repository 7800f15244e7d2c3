"""The soak's short version (scripts/soak.py; the long one is a script, its figures in
docs/reliability.md): 300 frame sets with engines, sentinels, closed-loop focus and injected
faults, the engine host killed twice. Descriptors, threads and shared-memory segments stay
flat while it runs, and nothing is left once it ends."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests._helpers import ROOT

pytestmark = pytest.mark.slow


def test_a_short_soak_keeps_its_resources_flat(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    summary = soak.run_soak(300, 2, 0.5, tmp_path)
    assert summary["state"] == "finished", summary["first_errors"]
    # how many kills land before the run ends depends on this machine's speed: at least one,
    # and each one a crash the host came back from
    assert 1 <= summary["kills"] <= 2 and summary["host"]["crashes"] >= summary["kills"]
    assert summary["faults"]["recovered_by_retry"] == summary["faults"]["retries"] > 0
    g = summary["growth"]
    for key, slack in (("fds", 3), ("threads", 3), ("shm_segments", 0)):
        assert g[key]["max"] - g[key]["first"] <= slack, (key, g[key])
    after = summary["after_the_run"]
    assert after["shm_segments"] == 0 and after["threads"] <= g["threads"]["first"]
    assert (tmp_path / "soak.png").is_file() and (tmp_path / "soak.csv").is_file()


def test_the_soak_names_the_line_whose_memory_grew(tmp_path: Path) -> None:
    """``--tracemalloc``: tracing starts after warm-up and each later sample writes where the
    traced heap grew since the first, by the allocating line."""
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    out = tmp_path / "tracemalloc.txt"
    growth = soak.Growth(100, out)
    kept: list[bytes] = []
    try:
        growth.sample(50)  # warming up: nothing traced
        assert not growth.tm.is_tracing()
        growth.sample(100)  # tracing starts
        growth.sample(150)  # still turning over what was there before
        assert growth.base is None
        growth.sample(200)  # the first snapshot
        kept.append(bytearray(3 * 2**20))  # a leak of 3 MB, from this line
        records = [str(i) * 3 for i in range(20_000)]  # and of many small records
        growth.sample(250)
    finally:
        growth.tm.stop()
    text = out.read_text()
    assert text.startswith("growth from frame set 200 to 250:")
    lines = text.splitlines()
    first = lines[lines.index("largest growth (arrays in flight sit here):") + 1:][:2]
    assert first[0].split()[0].startswith("+307") and "test_soak.py" in first[1], text[:400]
    most = lines[lines.index("most new blocks (how a leak of small records looks):") + 1:][:2]
    assert int(most[0].split()[2]) >= 19_000 and "test_soak.py" in most[1], text[-600:]
    assert len(records) == 20_000
