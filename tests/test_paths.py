"""One path rule: a path in a file is relative to that file; on the command line, to the
working folder. A recipe's data path written the old way (from the working folder) is refused
with the path to write instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._helpers import ROOT


def _recipe(folder: Path, data: str) -> Path:
    text = (ROOT / "training" / "mda_phc_dapi.toml").read_text()
    text = text.replace('simulate = "mda231"', f'path = "{data}"')
    path = folder / "recipes" / "mine.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_recipe_data_path_is_relative_to_the_recipe(tmp_path: Path) -> None:
    from acquire_vf.config import load_recipe

    (tmp_path / "data" / "mine").mkdir(parents=True)
    rec = load_recipe(_recipe(tmp_path, "../data/mine"))[0]
    assert rec.data.path == (tmp_path / "data" / "mine").resolve()


def test_the_old_working_folder_rule_is_refused_with_the_path_to_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acquire_vf._errors import ProfileError
    from acquire_vf.config import load_recipe

    (tmp_path / "data" / "mine").mkdir(parents=True)
    path = _recipe(tmp_path, "data/mine")
    monkeypatch.chdir(tmp_path)
    fix = r"relative to the recipe's folder .* \('\.\./data/mine'\)"
    with pytest.raises(ProfileError, match=fix):
        load_recipe(os.path.relpath(path))


def test_the_session_table_lists_latencies_in_the_order_a_frame_meets_them() -> None:
    from acquire_vf.acquisition._report import _latency_order

    names = ["virtual_end_to_end", "synthesis:DNA", "pipeline", "handoff", "refocus",
             "focus_score", "defocus", "synthesis:ER"]
    got = [n for n, _ in sorted(((n, None) for n in names), key=_latency_order)]
    assert got == ["handoff", "focus_score", "defocus", "refocus", "synthesis:DNA",
                   "synthesis:ER", "pipeline", "virtual_end_to_end"]
