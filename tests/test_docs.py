"""The README's generated parts agree with the code they come from."""

from __future__ import annotations

import re

from acquire_vf._errors import ERRORS, exit_code_table
from tests._helpers import ROOT


def test_readme_exit_code_table_is_generated_from_the_errors() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- exit-codes:[^>]*-->\n(.*?)\n<!-- /exit-codes -->", readme, re.S)
    assert m, "README lost its exit-code table markers"
    assert m.group(1) == exit_code_table(), (
        "README's exit-code table is stale: paste acquire_vf._errors.exit_code_table()")


def test_readme_engine_table_is_generated_from_the_cards() -> None:
    from acquire_vf.card import engine_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- engines:[^>]*-->\n(.*?)\n<!-- /engines -->", readme, re.S)
    assert m, "README lost its engine table markers"
    assert m.group(1) == engine_table(ROOT / "engines"), (
        "README's engine table is stale: run scripts/ship_engines.py --evaluate (or paste "
        "acquire_vf.card.engine_table(Path('engines')))")


def test_readme_command_table_is_generated_from_the_cli() -> None:
    from acquire_vf._cli_docs import command_table, commands

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- commands:[^>]*-->\n(.*?)\n<!-- /commands -->", readme, re.S)
    assert m, "README lost its command table markers"
    assert m.group(1) == command_table(), (
        "README's command table is stale: paste acquire_vf._cli_docs.command_table()")
    names = {n for n, _ in commands()}
    assert {"demo", "calibrate", "export-bioimageio", "profile validate"} <= names
    assert "`acquire-vf calibrate --profile PROFILE --out OUT [--positions POSITIONS]" in \
        m.group(1)


def test_every_error_has_its_own_exit_code() -> None:
    codes = [cls.exit_code for cls in ERRORS]
    assert len(codes) == len(set(codes)), codes
    assert all(1 <= c < 128 for c in codes)
