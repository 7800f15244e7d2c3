"""The model card: what an engine file is, how to feed it and how good it is.

Written by ``acquire-vf export`` beside ``NAME.onnx`` as ``NAME.json``; read by every inference
backend, by ``evaluate`` and by the live pipeline. Torch-free, so a microscope PC can read it.
Normalisation is stored exactly as training applied it, so inference inverts it exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from acquire_vf._errors import CardError, EngineFileError

CARD_VERSION: Literal[1] = 1


class Normalisation(BaseModel):
    """``x_norm = 2 (x - low) / (high - low) - 1``: [low, high] maps to [-1, 1].

    ``low``/``high`` are robust percentiles of the training images of that channel (``mode =
    "dataset"``), fixed at training time, so inference needs no per-frame statistics and the
    output's inverse is exact. Values outside [low, high] are not clipped on input (the model
    sees them, and QC flags them); the output's Tanh range maps back onto [low, high].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["dataset"] = "dataset"
    low: float
    high: float
    percentiles: tuple[float, float] = (0.1, 99.9)

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Raw → [-1, 1] (float32; in-place arithmetic: this runs on every live frame), into
        ``out`` when given (a frame slot in the engine host's shared memory)."""
        scale = np.float32(2.0 / max(self.high - self.low, 1e-6))
        out = np.subtract(x, np.float32(self.low), dtype=np.float32, out=out)
        out *= scale
        out -= np.float32(1.0)
        return out

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """[-1, 1] → raw intensity (float32, a new array)."""
        out = np.add(y, np.float32(1.0), dtype=np.float32)
        out *= np.float32((self.high - self.low) / 2.0)
        out += np.float32(self.low)
        return out


class ModelCard(BaseModel):
    """Everything needed to run an engine correctly and to judge its output."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Literal[1] = CARD_VERSION
    name: str
    task: Literal["refocus", "synthesis", "defocus"]
    inputs: tuple[str, ...] = Field(min_length=1)
    """Input channel names, in the order of the model's input channels."""
    output: str
    normalisation: dict[str, Normalisation]
    """Per channel (every input and the output)."""
    dtype: Literal["uint8", "uint16"] = "uint16"
    tile: int = 256
    overlap: int = 32
    multiple_of: int
    """Height and width the network needs to be divisible by (inputs are padded to it)."""
    preset: str
    width: int
    depth: int
    residual: bool = False
    """The network adds its output to the input (refocus engines trained with residual)."""
    parameters: int
    gflop_per_256: float
    """Forward cost per 256 x 256 pixels."""
    onnx_sha256: str
    opset: int
    training: dict[str, Any] = {}
    """Recipe (name, sha256, text), data, steps, seed, the command that reproduces it."""
    metrics: dict[str, Any] = {}
    """Held-out metrics with baselines (filled by ``evaluate --update-card``)."""
    acceptance: dict[str, float] = {}
    """The band a live sentinel's fidelity must stay in (``psnr_min``, ``ssim_min``,
    ``mae_max``, ``uncertainty_max``), from the held-out figures (``evaluate --update-card``);
    when absent, :func:`acceptance_band` derives it from ``metrics``."""
    defocus: dict[str, Any] = {}
    """Defocus estimators: the stain, range, plane step, pixel size, NA, indices, emitter
    depth and wavelength of the through-focus stacks they were trained on."""
    input_stats: dict[str, Any] = {}
    """Per input channel: frame mean, focus score and intensity histogram of the training
    split's inputs (written at export), for the live input checks."""
    optics: dict[str, Any] = {}
    """Refocus engines: the optics and camera of the data they were judged on (``na``,
    ``immersion_index``, ``specimen_index``, ``pixel_size_um``, ``depth_um``,
    ``wavelength_um``; ``offset_adu``, ``gain_adu_per_e``, ``read_noise_e``), written by
    ``evaluate --update-card`` on simulated data, for the live forward-consistency check
    (:mod:`acquire_vf.simulate._consistency`)."""
    targets: tuple[dict[str, Any], ...] = ()
    """Quality targets from the recipe (:class:`~acquire_vf.config.Target`), checked by
    ``evaluate``; their results go into ``metrics`` (``held_out.targets``, ``final_test``)."""
    quantization: dict[str, Any] = {}
    """INT8 engines (``acquire-vf quantize``): the fp32 engine they came from (``from``,
    ``from_sha256``, ``from_path``), the format and the calibration data."""

    @classmethod
    def load(cls, onnx_path: str | Path, *, verify: bool = True) -> ModelCard:
        """The card beside ``onnx_path``; with ``verify``, check it describes that exact file."""
        onnx_path = Path(onnx_path)
        path = onnx_path.with_suffix(".json")
        if verify and not onnx_path.exists():
            raise EngineFileError(f"engine file not found: '{onnx_path}'")
        try:
            card = cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise CardError(f"model card not found: expected '{path}' beside the ONNX file") \
                from None
        except (json.JSONDecodeError, ValueError) as e:
            msg = " ".join(str(e).split())[:300]
            raise CardError(f"model card '{path}' is not valid: {msg}") from e
        if verify:
            digest = sha256_file(onnx_path)
            if digest != card.onnx_sha256:
                raise CardError(f"'{onnx_path.name}' does not match its card: sha256 "
                                f"{digest[:12]}..., card says {card.onnx_sha256[:12]}...")
        return card

    def save(self, onnx_path: str | Path) -> Path:
        path = Path(onnx_path).with_suffix(".json")
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


BAND_SDS = 3.0
"""Acceptance band: the held-out mean, this many standard deviations towards worse."""


def acceptance_band(card: ModelCard) -> dict[str, float]:
    """The card's acceptance band, or one derived from its held-out figures (mean -/+ 3 sd);
    empty when the card has neither."""
    if card.acceptance:
        return dict(card.acceptance)
    pred = (card.metrics.get("held_out") or {}).get("prediction") or {}
    band: dict[str, float] = {}
    if "psnr" in pred:
        band["psnr_min"] = round(pred["psnr"] - BAND_SDS * pred.get("psnr_sd", 0.0), 3)
    if "ssim" in pred:
        band["ssim_min"] = round(pred["ssim"] - BAND_SDS * pred.get("ssim_sd", 0.0), 4)
    if "mae" in pred:
        band["mae_max"] = round(pred["mae"] + BAND_SDS * pred.get("mae_sd", 0.0), 5)
    cons = (card.metrics.get("held_out") or {}).get("consistency") or {}
    if "chi2_p95" in cons:  # validation frames' 95th percentile, with half again for room
        band["consistency_chi2_max"] = round(max(1.5 * cons["chi2_p95"], 4.0), 3)
    unc = (card.metrics.get("held_out") or {}).get("uncertainty") or {}
    if "frame_mean" in unc:
        band["uncertainty_max"] = round(unc["frame_mean"] + BAND_SDS * unc.get(
            "frame_mean_sd", 0.0), 6)
    return band


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise CardError(f"cannot read '{path}': {e.strerror or e}") from e
    return h.hexdigest()


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes (reflect) up to a multiple; return the array and the original size.

    Odd sizes are handled by padding at the bottom/right and cropping the output back, so the
    network sees a valid size and the result keeps the input's shape.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    if h > ph and w > pw:
        return np.pad(x, pad, mode="reflect"), (h, w)
    return np.pad(x, pad, mode="symmetric"), (h, w)


def engine_table(folder: Path) -> str:
    """The README's table of the engines in ``folder``: their cards' validation figures and, once
    run, final-test figures and targets; generated so it cannot drift from the cards
    (``tests/test_docs.py``)."""
    rows = ["| engine | task | inputs -> output | learned from | validation PSNR / SSIM / TL "
            "(targets met) | final test PSNR [95%] / SSIM (targets met) | baseline PSNR (final "
            "test) | report |", "|---|---|---|---|---|---|---|---|"]

    def met(figures: dict[str, Any]) -> str:
        targets = figures.get("targets", [])
        return f"{sum(bool(t['met']) for t in targets)} of {len(targets)}"

    for f in sorted(folder.glob("*.json")):
        c = ModelCard.model_validate(json.loads(f.read_text()))
        held, final = c.metrics.get("held_out") or {}, c.metrics.get("final_test") or {}
        if c.task == "defocus" or not held.get("prediction") or c.quantization:
            continue  # INT8 engines: docs/performance.md (their cost against the fp32 one)
        p = held["prediction"]
        val = f"{p['psnr']:.2f} dB / {p['ssim']:.3f} / {p['tl']:.3f} ({met(held)})"
        fin, base = "not run", "–"
        if final.get("sha256") == c.onnx_sha256:
            q, ci = final["prediction"], final["prediction"].get("psnr_ci95")
            fin = (f"{q['psnr']:.2f} dB" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")
                   + f" / {q['ssim']:.3f} ({met(final)})")
            base = "; ".join(f"{k} {v['psnr']:.2f}" for k, v in final["baselines"].items())
        sim = (c.training.get("data") or {}).get("simulated") or {}
        learned = "simulator v4" if sim.get("realistic") else "simulator v3"
        rows.append(f"| `{c.name}` | {c.task} | {' + '.join(c.inputs)} -> {c.output} | "
                    f"{learned} | {val} | "
                    f"{fin} | {base} | [report](docs/models/{c.name}/report.html) |")
    return "\n".join(rows)


def shipped_engine(p: str | Path) -> Path:
    """``p`` as given where it exists; else, for a bare name (``refocus_rna``) or a path into an
    ``engines/`` folder that is not here (``engines/refocus_rna.onnx``, as the docs write it
    from the checkout), the shipped engine of that name, checkout or wheel alike (as recipes
    and profiles resolve by name)."""
    p = Path(p)
    if p.exists() or p.parent not in (Path("."), Path("engines")):
        return p
    from acquire_vf._paths import shipped

    found = shipped("engines") / (p.name if p.suffix == ".onnx" else f"{p.name}.onnx")
    return found if found.is_file() else p


def engine_path(p: Path) -> Path:
    """An engine file: ``NAME.onnx`` as named (a shipped engine by its name, see
    :func:`shipped_engine`), or the ONNX inside a bioimage.io package that acquire-vf exported
    (the package folder, or its ``rdf.yaml``; the acquire-vf card beside the weights)."""
    p = shipped_engine(p)
    if not (p.is_dir() or p.name == "rdf.yaml"):
        return p
    import yaml

    rdf = p / "rdf.yaml" if p.is_dir() else p
    try:
        data = yaml.safe_load(rdf.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CardError(f"'{p}': expected a bioimage.io package (a folder with rdf.yaml), "
                        f"could not read it ({' '.join(str(e).split())[:160]})") from None
    onnx = ((data or {}).get("weights") or {}).get("onnx", {}).get("source")
    if not onnx or not (rdf.parent / onnx).with_suffix(".json").is_file():
        raise CardError(f"'{p}': expected a bioimage.io package exported by acquire-vf (ONNX "
                        "weights with the acquire-vf card beside them), got one without")
    return rdf.parent / onnx
