"""bioimage.io model packages of acquire-vf engines (``acquire-vf export-bioimageio``).

A package is a folder the bioimage.io tools (deepImageJ, ilastik, QuPath, BioEngine,
bioimageio.core) read: ``rdf.yaml`` (model spec 0.5, checked by bioimageio.spec's own
validation before it is written), the ONNX weights, a test input and its expected output
(``.npy``), a cover image, a ``README.md`` with the card's figures and the training data, and
the acquire-vf card itself (``NAME.json``, beside ``NAME.onnx``, so that acquire-vf's own
``predict`` and profiles take the package folder as an engine).

The engine's ONNX graph works on normalised intensities; the package states the normalisation
as bioimage.io processing, so other tools feed it raw camera values:

- preprocessing, per input channel: ``scale_linear`` with gain ``2 / (high - low)`` and offset
  ``-2 low / (high - low) - 1`` (the card's ``[low, high]`` to ``[-1, 1]``);
- postprocessing: ``scale_linear`` with gain ``(high - low) / 2`` and offset
  ``low + (high - low) / 2`` (the Tanh output back to camera values).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import DataError

TEST_SIZE = 256
RDF = "rdf.yaml"


def _norm_gain_offset(card: Any, names: list[str]) -> tuple[list[float], list[float]]:
    gains, offsets = [], []
    for n in names:
        nm = card.normalisation[n]
        span = nm.high - nm.low
        gains.append(2.0 / span)
        offsets.append(-2.0 * nm.low / span - 1.0)
    return gains, offsets


def test_input(card: Any, size: int = TEST_SIZE) -> np.ndarray:
    """One field of the engine's kind of data, simulated (``(1, C, size, size)`` float32, camera
    values): a defocused plane for a refocus engine, its input channels for a synthesis one."""
    from acquire_vf.evaluate import recipe_for
    from acquire_vf.pairs import read_pairs
    from acquire_vf.simulate import write_dataset

    spec = dict(card.training.get("data") or {})
    kind = spec.get("simulate") or {"bbbc006": "bbbc006", "paired": "mda231"}.get(
        spec.get("layout", ""), "bbbc022")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_dataset(kind, root, fields=1, seed=4242, size=(size, size))  # type: ignore[arg-type]
        pairs = read_pairs(recipe_for(card, root).data, root, seed=0, require_splits=False)
        every = pairs.train + pairs.val + pairs.test
        if not every:
            raise DataError(f"could not simulate a test input for '{card.name}'")
        pick = max(every, key=lambda p: abs(p.z_um) <= 6.0 and p.z_um != 0)  # 4-6 µm off
        return pick.inputs[None].astype(np.float32)


def run_engine(onnx: Path, card: Any, x: np.ndarray) -> np.ndarray:
    """What a bioimage.io tool computes: preprocessing, the ONNX graph, postprocessing."""
    import onnxruntime as ort

    g, o = _norm_gain_offset(card, list(card.inputs))
    xn = (x * np.asarray(g, np.float32)[None, :, None, None]
          + np.asarray(o, np.float32)[None, :, None, None]).astype(np.float32)
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: xn})[0]
    out = card.normalisation[card.output]
    return (y * (out.high - out.low) / 2 + out.low + (out.high - out.low) / 2).astype(np.float32)


def _cover(x: np.ndarray, y: np.ndarray, card: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    for ax, img, title in ((axes[0], x[0, 0], f"input: {card.inputs[0]}"),
                           (axes[1], y[0, 0], f"virtual {card.output}")):
        lo, hi = np.percentile(img, [0.5, 99.8])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=max(hi, lo + 1))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _readme(card: Any) -> str:
    m = card.metrics or {}
    held = m.get("prediction") or m.get("held_out", {}).get("prediction") or {}
    final = (m.get("final_test") or {}).get("prediction") or {}
    data = card.training.get("data") or {}
    lines = [f"# {card.name}", "", f"An acquire-vf {card.task} engine: {list(card.inputs)} -> "
             f"{card.output} (a conditional GAN after the VirFluoNet paper, `{card.preset}` "
             "preset, "
             f"{card.parameters:,} parameters).", "",
             "## Training data", "",
             f"Layout `{data.get('layout')}`, inputs {data.get('inputs')}, target "
             f"{data.get('target')}; " + ("simulated by acquire-vf's simulator "
                                          f"(`{data.get('simulate')}`)" if data.get("simulate")
                                          else f"from `{card.training.get('data_root')}`") +
             f"; {card.training.get('steps')} steps, seed {card.training.get('seed')}. "
             "These engines were trained on simulated cells: check them on your own "
             "images (acquire-vf evaluate, or calibrate and fine-tune) before trusting them.",
             "", "## Figures", ""]
    for label, fig in (("held-out (validation)", held), ("final test", final)):
        if fig:
            lines.append(f"- {label}: PSNR {fig.get('psnr')}, SSIM {fig.get('ssim')}, "
                         f"MAE {fig.get('mae')}")
    if not (held or final):
        lines.append("- not evaluated yet (see the card, `NAME.json`)")
    lines += ["", "## Validation", "",
              "Judged by `acquire-vf evaluate` with the paper's metrics (MAE, PSNR, SSIM with a "
              "Gaussian window, the tolerance-level index), intervals by field, baselines, and "
              "the recipe's targets, on simulated held-out fields (validation) and once on a "
              "final test set; refocus engines also on real widefield nuclei (acquire-vf "
              "docs/real-images.md). The figures above are those. The test tensors in this "
              "package were computed with ONNX Runtime from a simulated field.",
              "", "## Normalisation", "",
              "Raw camera intensities in; preprocessing and postprocessing in `rdf.yaml` map "
              "each channel's card range `[low, high]` to `[-1, 1]` and the output back.", ""]
    return "\n".join(lines)


def export_bioimageio(onnx: Path, out: Path, *, overwrite: bool = False) -> Path:
    """Write the bioimage.io package of the engine ``onnx`` (with its card) into ``out``;
    the ``rdf.yaml`` path. The description is validated by bioimageio.spec first."""
    try:
        import bioimageio.spec.model.v0_5 as v
        from bioimageio.spec import ValidationContext, save_bioimageio_package_as_folder
    except ImportError as e:
        from acquire_vf._errors import MissingExtraError

        raise MissingExtraError("bioimageio.spec", "bioimageio") from e
    from acquire_vf.card import ModelCard

    card = ModelCard.load(onnx)
    if card.task == "defocus":
        raise DataError(f"'{onnx}': expected a refocus or synthesis engine (image to image), "
                        "got a defocus estimator")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x = test_input(card)
        y = run_engine(onnx, card, x)
        np.save(work / "test_input.npy", x)
        np.save(work / "test_output.npy", y)
        import tifffile

        tifffile.imwrite(work / "sample_input.tif", x[0])
        tifffile.imwrite(work / "sample_output.tif", y[0])
        _cover(x, y, card, work / "cover.png")
        (work / "README.md").write_text(_readme(card))
        shutil.copy2(onnx, work / onnx.name)
        shutil.copy2(onnx.with_suffix(".json"), work / onnx.with_suffix(".json").name)
        descr = _description(v, card, work, onnx.name)
        with ValidationContext(root=work, perform_io_checks=True):
            checked = v.ModelDescr.model_validate(descr.model_dump(mode="json",
                                                                    exclude_unset=True))
        summary = checked.validation_summary
        if summary.status not in ("valid-format", "passed"):
            raise DataError(f"bioimage.io description of '{card.name}' failed bioimageio.spec's "
                            f"validation: {summary.format()[:400]}")
        if out.exists() and overwrite:
            shutil.rmtree(out)
        save_bioimageio_package_as_folder(checked, output_path=out)
    return out / RDF


def _description(v: Any, card: Any, work: Path, onnx_name: str) -> Any:
    multiple = int(card.multiple_of or 16)
    g_in, o_in = _norm_gain_offset(card, list(card.inputs))
    out = card.normalisation[card.output]
    span = out.high - out.low
    inp = v.InputTensorDescr(
        id=v.TensorId("input"), description="raw camera intensities, one channel each: "
        + ", ".join(card.inputs),
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(c) for c in
                                                           _ids(card.inputs)]),
              v.SpaceInputAxis(id=v.AxisId("y"), size=v.ParameterizedSize(min=multiple,
                                                                          step=multiple)),
              v.SpaceInputAxis(id=v.AxisId("x"), size=v.ParameterizedSize(min=multiple,
                                                                          step=multiple))],
        test_tensor=v.FileDescr(source=work / "test_input.npy"),
        sample_tensor=v.FileDescr(source=work / "sample_input.tif"),
        preprocessing=[v.ScaleLinearDescr(kwargs=v.ScaleLinearAlongAxisKwargs(
            axis=v.AxisId("channel"), gain=g_in, offset=o_in))])
    outp = v.OutputTensorDescr(
        id=v.TensorId("output"), description=f"virtual {card.output}, camera intensities",
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(_ids([card.output])[0])]),
              v.SpaceOutputAxis(id=v.AxisId("y"), size=v.SizeReference(
                  tensor_id=v.TensorId("input"), axis_id=v.AxisId("y"))),
              v.SpaceOutputAxis(id=v.AxisId("x"), size=v.SizeReference(
                  tensor_id=v.TensorId("input"), axis_id=v.AxisId("x")))],
        test_tensor=v.FileDescr(source=work / "test_output.npy"),
        sample_tensor=v.FileDescr(source=work / "sample_output.tif"),
        postprocessing=[v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(
            gain=span / 2, offset=out.low + span / 2))])
    return v.ModelDescr(
        name=f"acquire-vf {card.name}",
        description=(f"Virtual {'refocusing' if card.task == 'refocus' else 'fluorescence'}: "
                     f"{', '.join(card.inputs)} -> {card.output}, from acquire-vf "
                     "(VirFluoNet-style conditional GAN)")[:1000],
        authors=[v.Author(name="acquire-vf developers")],
        cite=[v.CiteEntry(text="Ljosa, Sokolnicki and Carpenter, Annotated high-throughput "
                          "microscopy image sets for validation (the Broad Bioimage Benchmark "
                          "Collection, whose BBBC006 and BBBC022 layouts the training data "
                          "follow)", url=v.HttpUrl("https://bbbc.broadinstitute.org/"))],
        license=v.LicenseId("BSD-3-Clause"),
        documentation=v.FileDescr(source=work / "README.md"),
        covers=[v.FileDescr(source=work / "cover.png")],
        attachments=[v.FileDescr(source=work / f"{Path(onnx_name).stem}.json")],
        tags=["acquire-vf", card.task, "virtual-staining" if card.task == "synthesis"
              else "refocusing", "2d", "fluorescence", "onnx"],
        inputs=[inp], outputs=[outp],
        weights=v.WeightsDescr(onnx=v.OnnxWeightsDescr(source=work / onnx_name,
                                                       opset_version=int(card.opset))),
        config=v.Config(**{"acquire-vf": {"card": f"{Path(onnx_name).stem}.json",
                                          "training": {k: card.training.get(k) for k in
                                                       ("recipe", "steps", "seed", "data")},
                                          "metrics": json.loads(json.dumps(card.metrics or {},
                                                                           default=str))}}),
    )


def _ids(names: Any) -> list[str]:
    """Channel names as bioimage.io identifiers (letters, digits, underscores)."""
    return ["".join(ch if ch.isalnum() else "_" for ch in n) for n in names]
