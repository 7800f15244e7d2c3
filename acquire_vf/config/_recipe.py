"""Training recipes (``training/*.toml``): one recipe, one engine.

A recipe names its data (a public layout, real or simulated), the model preset, loss weights
and the schedule. Simulated data is written once, in the public layout, into a cache folder
keyed by the simulation settings, and read by the same loaders as downloaded data.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from acquire_vf._errors import ProfileError
from acquire_vf._paths import REPO_ROOT, cache_root, shipped
from acquire_vf.config._load import format_validation_error

PRESET_DEPTH = {"paper": 8, "realtime": 6}
"""Generator depth of each preset (mirrors ``_models.PRESETS``; kept here to stay torch-free)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SimulatedData(_Model):
    fields: int = Field(24, ge=3)
    seed: int = 1000
    """Simulation seed; held-out evaluation uses other seeds."""
    size: tuple[int, int] = (256, 256)
    """Field size (width, height) in pixels."""
    realistic: bool = False
    """Simulator version 4's realism (thick cells, background, vignetting, sCMOS pattern,
    linked channels; docs/simulator.md)."""
    randomise: bool = False
    """With ``realistic``: domain randomisation per field (texture, density, gains, PSF
    aberration, pixel size, dose)."""
    dose: float = Field(1.0, gt=0, le=10)
    """With ``realistic``: photon scale (1: about 5,000 electrons at the brightest pixels)."""
    dose_floor: float = Field(0.01, gt=0, le=1)
    """With ``randomise``: the dimmest field's dose as a fraction of ``dose`` (each field's
    is drawn log-uniformly from it to ``dose``; 0.01, the default, reaches the low-dose
    live-cell regime)."""

    @model_validator(mode="after")
    def _realism_needs_realistic(self) -> SimulatedData:
        if (self.randomise or self.dose != 1.0) and not self.realistic:
            raise ValueError("randomise and dose are simulator version 4's: set realistic = "
                             "true with them")
        if self.dose_floor != 0.01 and not self.randomise:
            raise ValueError("dose_floor bounds the randomised dose: set randomise = true "
                             "with it")
        return self

    def realism(self) -> dict[str, object] | None:
        """The arguments of the :class:`~acquire_vf.simulate.Realism` these settings ask for
        (``None``: the thin, bright specimen of simulator version 3)."""
        if not self.realistic:
            return None
        out: dict[str, object] = {"randomise": self.randomise, "dose": self.dose}
        if self.dose_floor != 0.01:  # only where set: the datasets made before keep their keys
            out["dose_floor"] = self.dose_floor
        return out


class Data(_Model):
    layout: Literal["bbbc006", "bbbc022", "paired"]
    path: Path | None = None
    """Folder of real data in that layout, relative to the recipe's folder (or absolute);
    empty means simulated data."""
    simulate: Literal["bbbc006", "bbbc022", "mda231"] | None = None
    """Which simulated dataset stands in when ``path`` is empty."""
    inputs: tuple[str, ...] = Field(min_length=1)
    target: str
    z_range_um: tuple[float, float] = (-12.0, 8.0)
    """BBBC006 only: defocused planes used as inputs."""
    exclude_um: tuple[float, float] = (-2.0, 2.0)
    """BBBC006 only: planes too close to focus, left out."""
    simulated: SimulatedData = SimulatedData()
    splits: dict[str, Literal["train", "val", "test"]] | None = None
    """Real data: which field goes to which split, by name (the file's stem in the paired
    layout, the well in the others), e.g. ``{POS002 = "train", POS076 = "val", POS218 =
    "test"}``; every field must be named. Empty: fields are split at random with ``seed``."""
    cache: Path = Path(".cache/datasets")
    """Where simulated datasets are written (``.cache/...``: acquire-vf's cache folder, the
    checkout's ``.cache`` or the user cache of an installed wheel)."""

    @model_validator(mode="after")
    def _source(self) -> Data:
        if self.path is None and self.simulate is None:
            raise ValueError("data needs 'path' (real data) or 'simulate' (simulated data)")
        return self


class Train(_Model):
    steps: int = Field(2000, ge=1)
    batch: int = Field(8, ge=1)
    """Per process; the effective batch is batch x number of processes (DDP)."""
    patch: int = Field(128, ge=32, multiple_of=16)
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas (pix2pix practice; the paper gives only the learning rate)."""
    val_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(200, ge=1)
    val_patches: int = Field(32, ge=1)
    augment: bool = True
    """Random 90-degree rotations and flips."""
    equalize: bool = False
    """Histogram-equalise inputs (the paper did, for MDA-MB-231 only)."""
    amp: bool = True
    """Mixed precision on GPU (ignored on CPU)."""
    ema: float | None = Field(None, gt=0, lt=1)
    """Keep an exponential moving average of the generator's weights with this decay (e.g.
    0.999; not in the paper) and validate, keep as best and export it instead of the last
    step's weights: a GAN's generator oscillates from step to step, its average less."""


class Loss(_Model):
    mae: float = 0.99
    adversarial: float = 0.01
    weights_l1: float = 0.001
    l1_reduction: Literal["mean", "sum"] = "mean"


class Export(_Model):
    tile: int = Field(256, ge=64)
    overlap: int = Field(32, ge=0)


class Target(_Model):
    """A quality target that ``acquire-vf evaluate`` checks (``[[targets]]`` in a recipe)."""

    what: str = ""
    """The target in words, as the report and the card state it."""
    metric: Literal["psnr", "ssim", "mae", "tl", "feature_correlation"]
    """``feature_correlation``: the median per-cell feature correlation (synthesis)."""
    over: str | None = None
    """Judge the gain over this instead of the value itself: a baseline of the same evaluation
    (``input``, ``richardson_lucy``, ``linear``) or ``engine:NAME``, another engine's figures
    on the same kind of data (its card beside this engine). A gain is positive when the engine
    is better: prediction minus it for PSNR, SSIM and correlation, it minus prediction for MAE
    and the tolerance-level index."""
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Target:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError(f"target '{self.what or self.metric}' needs exactly one of "
                             "at_least or at_most")
        return self


class HeldOutSet(_Model):
    """A simulated evaluation set: fields drawn with a seed training never used.

    ``[held_out]`` is the validation set: its figures may steer choices (keep or revert,
    schedules) and are evaluated as often as needed (``evaluate --held-out``).
    ``[final_test]`` is evaluated once, after every choice is made (``evaluate
    --final-test``); the card records that it was used, and for which engine file."""

    seed: int
    fields: int = Field(8, ge=3)


class Recipe(_Model):
    version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """Engine name: ``engines/NAME.onnx``."""
    task: Literal["refocus", "synthesis"]
    description: str = ""
    preset: Literal["paper", "realtime"] = "realtime"
    residual: bool = False
    """Refocus only: predict a correction added to the defocused input (starts as the
    identity) instead of the whole image."""
    seed: int = 0
    data: Data
    train: Train = Train()
    loss: Loss = Loss()
    export: Export = Export()
    targets: tuple[Target, ...] = ()
    """Quality targets, checked by ``evaluate`` and written into the card."""
    held_out: HeldOutSet | None = None
    final_test: HeldOutSet | None = None

    @model_validator(mode="after")
    def _task_fits_data(self) -> Recipe:
        if self.task == "refocus" and (self.data.layout != "bbbc006" or
                                       self.data.inputs != (self.data.target,)):
            raise ValueError("a refocus recipe takes one channel from a bbbc006 layout and "
                             "predicts the same channel in focus")
        if self.residual and self.task != "refocus":
            raise ValueError("residual = true is for refocus recipes (the output is the input "
                             f"channel corrected); this recipe's task is '{self.task}'")
        seeds = {"training data": self.data.simulated.seed}
        for which, s in (("held_out", self.held_out), ("final_test", self.final_test)):
            if s is not None and s.seed in seeds.values():
                other = next(k for k, v in seeds.items() if v == s.seed)
                raise ValueError(f"{which}.seed {s.seed} is also the {other}'s seed: each "
                                 "set needs fields the others never saw")
            if s is not None:
                seeds[which] = s.seed
        if self.task == "synthesis" and self.data.target in self.data.inputs:
            raise ValueError(f"target '{self.data.target}' is also an input")
        multiple = 2 ** PRESET_DEPTH[self.preset]
        if self.train.patch % multiple:
            raise ValueError(f"preset '{self.preset}' needs patches in multiples of {multiple} "
                             f"(one halving per level), got train.patch = {self.train.patch}")
        return self


class DefocusRecipe(_Model):
    """A defocus estimator: one stain's frames to their signed distance from focus (µm),
    trained on through-focus stacks of the simulated slide (docs/focus.md)."""

    version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    task: Literal["defocus"]
    description: str = ""
    stain: Literal["DNA", "AGP", "RNA", "ER", "Mito", "actin", "BF"]
    """The stain (and channel name) it estimates from; ``BF`` is brightfield (transmitted
    light), which shows the side of focus."""
    signed: bool = False
    """Learn the signed defocus (``z``, above focus positive) rather than the distance
    ``|z|``: only where frames tell the side (brightfield); at low NA a fluorescence frame
    does not (docs/focus.md)."""
    range_um: float = Field(25.0, gt=0)
    """Training planes span +- this from focus."""
    step_um: float = Field(0.5, gt=0)
    size: int = Field(128, ge=64)
    """Field size of the through-focus stacks (pixels)."""
    fields: int = Field(48, ge=2)
    val_fields: int = Field(6, ge=1)
    data_seed: int = 3000
    exposure_ms: float = Field(50.0, gt=0)
    """Typical exposure; training draws a quarter to twice it."""
    realistic: bool = False
    """Stacks of simulator version 4's specimen (thick cells, background, vignetting)."""
    randomise: bool = False
    """With ``realistic``: each field's own style (domain randomisation)."""
    near_focus: float = Field(0.0, ge=0, lt=1)
    """Fraction of each training batch drawn from the planes within ``near_focus_um`` of
    focus, where closed-loop focus works (uniform over the planes otherwise); the best
    checkpoint is then the one whose worse median error, over the range or near focus, is
    lowest."""
    near_focus_um: float = Field(3.0, gt=0)
    patch: int = Field(96, ge=32, multiple_of=32)
    batch: int = Field(24, ge=1)
    steps: int = Field(2500, ge=1)
    lr: float = Field(2e-3, gt=0)
    width: int = Field(16, ge=4)
    val_every: int = Field(250, ge=1)
    val_patches: int = Field(512, ge=16)
    seed: int = 0

    @model_validator(mode="after")
    def _fits(self) -> DefocusRecipe:
        if self.patch > self.size:
            raise ValueError(f"patch {self.patch} is larger than the fields ({self.size})")
        if self.randomise and not self.realistic:
            raise ValueError("randomise is simulator version 4's: set realistic = true with it")
        return self


def load_defocus_recipe(path: str | Path) -> tuple[DefocusRecipe, str]:
    """The validated defocus recipe and its text."""
    return _load(path, DefocusRecipe)


_R = TypeVar("_R", Recipe, DefocusRecipe)


def _load(path: str | Path, model: type[_R]) -> tuple[_R, str]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        return model.model_validate(tomllib.loads(text)), text
    except FileNotFoundError:
        raise ProfileError(f"recipe not found: '{p}'") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{p}: not valid TOML: {e}") from e
    except ValidationError as e:
        raise ProfileError(f"{p}: {format_validation_error(e, model)}") from e


def recipe_task(path: str | Path) -> str:
    """The ``task`` a recipe file names (``""`` when it cannot be read: the loader says why)."""
    try:
        return str(tomllib.loads(Path(path).read_text(encoding="utf-8")).get("task", ""))
    except (OSError, tomllib.TOMLDecodeError):
        return ""


def load_recipe(path: str | Path) -> tuple[Recipe, str]:
    """The validated recipe and its text (stored in checkpoints and model cards).

    A relative ``data.path`` is relative to the recipe's own folder (paths in a file are
    relative to that file; on the command line, to the working directory), returned absolute.
    """
    rec, text = _load(path, Recipe)
    data = rec.data.path
    if data is None or data.is_absolute():
        return rec, text
    here = (Path(path).parent / data).resolve()
    if not here.is_dir() and data.is_dir():  # the older rule (the working folder) would find it
        fix = os.path.relpath(data.resolve(), Path(path).parent.resolve())
        raise ProfileError(f"{path}: data path '{data}' is relative to the recipe's folder "
                           f"('{Path(path).parent}'), where it does not exist; write it from "
                           f"there ('{fix}') or absolute")
    return rec.model_copy(update={"data": rec.data.model_copy(update={"path": here})}), text


def simulated_root(recipe: Recipe) -> Path:
    """Cache folder of a recipe's simulated dataset (keyed by everything that shapes it)."""
    d = recipe.data
    key = f"{d.simulate}-{d.simulated.fields}-{d.simulated.seed}-{d.simulated.size}"
    if d.simulated.realistic:  # version 3's keys stay as they were
        key += f"-realistic-{d.simulated.randomise}-{d.simulated.dose}"
        if d.simulated.dose_floor != 0.01:
            key += f"-floor-{d.simulated.dose_floor}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return data_root(str(d.cache)) / f"{d.simulate}-{digest}"


def data_root(named: str) -> Path:
    """A data folder as cards and recipes name it: absolute as it is; ``.cache/...`` in
    acquire-vf's cache (the checkout's ``.cache``, or the user cache for an installed wheel);
    anything else relative to the checkout."""
    p = Path(named)
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == ".cache":
        return cache_root().joinpath(*p.parts[1:])
    return REPO_ROOT / p


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe path, or the bare name of a shipped recipe (``refocus`` → its file)."""
    p = Path(name_or_path)
    if p.exists() or p.parent != Path("."):
        return p
    found = shipped("training") / f"{p.stem}.toml"
    return found if found.exists() else p
