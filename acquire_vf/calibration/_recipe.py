"""A recipe pointed at other data (``acquire-vf train --data DIR``): a calibration folder, or
a folder in the recipe's own layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acquire_vf._errors import DataError
from acquire_vf.calibration._acquire import read_manifest


def recipe_on(recipe: Any, folder: Path) -> Any:
    """``recipe`` with its data read from ``folder`` instead of its own (simulated) data.

    A calibration folder (``calibration.json``) gives refocus recipes its through-focus stacks
    (``bbbc006/``) and synthesis recipes its channels at focus (``paired/``, one folder per
    channel: the same channel names as the recipe's)."""
    if not folder.is_dir():
        raise DataError(f"--data: expected a folder of training data, got '{folder}' (no such "
                        "folder)")
    manifest = read_manifest(folder)
    layout, path = recipe.data.layout, folder
    if manifest is not None:
        if recipe.task == "refocus":
            layout, path = "bbbc006", folder / manifest["stacks"]["folder"]
            have = list(manifest["stacks"]["channels"])
        else:
            layout, path = "paired", folder / manifest["paired"]["folder"]
            have = list(manifest["paired"]["channels"])
        need = [*recipe.data.inputs, recipe.data.target]
        missing = [c for c in need if c not in have]
        if missing:
            what = "through focus" if recipe.task == "refocus" else "at focus"
            raise DataError(f"--data '{folder}': recipe '{recipe.name}' needs {need}, the "
                            f"calibration acquired {have} {what} (missing {missing})")
    data = recipe.data.model_copy(update={"layout": layout, "path": path.resolve(),
                                          "simulate": None})
    return recipe.model_copy(update={"data": data})
