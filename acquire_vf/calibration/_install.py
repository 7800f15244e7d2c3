"""A fine-tuned engine judged against the one it would replace and against doing nothing, and
installed only if it beats all of them.

All run on the same images: the calibration positions the new engine never saw (the test
split of its training data, split by position: 15% of positions, so ``calibrate --positions
15`` or more for the two an interval needs). All are scored on one scale (the new engine's
output range). The new engine is compared with:

- the engine it would replace (the profile's, or the one it started from);
- doing nothing: for refocus the camera's own frame (the defocused input), for synthesis a
  per-pixel linear fit of the target from the inputs on the training positions (what a
  microscopist gets from the inputs without any network).

It *beats* one of them when its mean PSNR is at least ``MIN_PSNR_GAIN_DB`` higher with the
95% interval of the difference (bootstrap by position) above zero, and its mean SSIM is no
more than ``MAX_SSIM_LOSS`` lower. It is installed only when it beats every one; with fewer
than two unseen positions there is no interval, and nothing is installed.

Installing copies the engine and its card beside the profile (``engines/`` in the profile's
folder), rewrites the one line of the profile that names the engine it replaces (comments and
everything else kept), checks that the new profile loads, and keeps the old file as
``NAME.toml.before-install``. Shipped profiles are never written: copy one first
(``acquire-vf profile copy``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import DataError, ProfileError

MIN_PSNR_GAIN_DB = 0.1
MAX_SSIM_LOSS = 0.002


def compare_engines(new: Path, old: Path, data: Path) -> dict[str, Any]:
    """``new`` against ``old`` on the positions ``new`` never saw in ``data``."""
    from acquire_vf.card import ModelCard
    from acquire_vf.config import Compute
    from acquire_vf.evaluate import recipe_for
    from acquire_vf.inference import create_engine
    from acquire_vf.metrics import image_metrics, to_unit
    from acquire_vf.pairs import read_pairs

    cards = ModelCard.load(new), ModelCard.load(old)
    if (cards[0].task, tuple(cards[0].inputs), cards[0].output) != \
            (cards[1].task, tuple(cards[1].inputs), cards[1].output):
        raise DataError(f"cannot compare '{new}' with '{old}': expected engines of the same "
                        f"task, inputs and output, got {cards[0].task} {list(cards[0].inputs)}"
                        f" -> {cards[0].output} and {cards[1].task} {list(cards[1].inputs)} "
                        f"-> {cards[1].output}")
    rec = recipe_for(cards[0], data)
    pairs = read_pairs(rec.data, data, seed=rec.seed).test
    if not pairs:
        raise DataError(f"'{data}' has no positions the new engine did not train on")
    norm = cards[0].normalisation[cards[0].output]
    compute = Compute(backends=("onnxruntime",))
    engines = [create_engine(p, compute) for p in (new, old)]
    rows: list[dict[str, Any]] = []
    if cards[0].task == "refocus":  # doing nothing: the camera's own frame
        baseline_name = "the camera frame"

        def baseline(p: Any) -> np.ndarray:
            return np.asarray(p.inputs[0], np.float64)
    else:  # doing nothing clever: a per-pixel linear fit on the training positions
        from acquire_vf.evaluate import linear_regression

        baseline_name, baseline = "the linear baseline", linear_regression(
            read_pairs(rec.data, data, seed=rec.seed))
    try:
        for pair in pairs:
            frames = [pair.inputs[i].astype(np.uint16) for i in range(pair.inputs.shape[0])]
            truth = to_unit(pair.target[0], norm.low, norm.high)
            row: dict[str, Any] = {"field": "/".join(map(str, pair.key)), "z_um": pair.z_um}
            for name, eng in zip(("new", "old"), engines, strict=True):
                pred = eng.infer(frames)[0]
                row[name] = image_metrics(to_unit(pred, norm.low, norm.high), truth)
            row["baseline"] = image_metrics(to_unit(baseline(pair), norm.low, norm.high), truth)
            rows.append(row)
    finally:
        for e in engines:
            e.close()
    fields = [r["field"] for r in rows]
    out: dict[str, Any] = {"new": str(new), "old": str(old), "data": str(data),
                           "unseen_positions": len(set(fields)), "images": len(rows),
                           "scale": {"low": norm.low, "high": norm.high}}
    for who in ("new", "old", "baseline"):
        out[who + "_figures"] = {m: round(float(np.mean([r[who][m] for r in rows])), 4)
                                 for m in ("psnr", "ssim", "mae")}
    out["baseline"] = baseline_name
    out["against"] = {"old": _against(rows, "old", fields),
                      baseline_name: _against(rows, "baseline", fields)}
    # the figures against the old engine, at the top level as before
    out.update({k: out["against"]["old"][k] for k in ("psnr_gain_db", "psnr_gain_ci95",
                                                       "ssim_gain")})
    out["beats"] = bool(all(a["beats"] for a in out["against"].values()))
    out["why_not"] = [] if out["beats"] else [
        f"{who}: {a['why']}" for who, a in out["against"].items() if not a["beats"]]
    if out["unseen_positions"] < 2:
        out["why_not"].insert(0, f"{out['unseen_positions']} unseen position: an interval needs "
                                 "2 or more (calibrate --positions 15 or more: 15% are held out)")
    out["rule"] = (f"PSNR gain >= {MIN_PSNR_GAIN_DB} dB with its 95% interval above 0, and SSIM "
                   f"loss <= {MAX_SSIM_LOSS}, against the engine replaced and against "
                   f"{baseline_name}, on the unseen positions")
    out["rows"] = rows
    return out


def _against(rows: list[dict[str, Any]], who: str, fields: list[str]) -> dict[str, Any]:
    """The new engine against ``who`` (``old`` or ``baseline``): gains, interval, verdict."""
    from acquire_vf.evaluate import field_ci

    d_psnr = [r["new"]["psnr"] - r[who]["psnr"] for r in rows]
    d_ssim = [r["new"]["ssim"] - r[who]["ssim"] for r in rows]
    gain, ci = round(float(np.mean(d_psnr)), 3), field_ci(d_psnr, fields)
    ssim_gain = round(float(np.mean(d_ssim)), 4)
    why = ("no interval (fewer than 2 unseen positions)" if ci is None else
           f"PSNR gain {gain:+.2f} dB below {MIN_PSNR_GAIN_DB}" if gain < MIN_PSNR_GAIN_DB else
           f"PSNR interval [{ci[0]:+.2f}, {ci[1]:+.2f}] reaches 0" if ci[0] <= 0 else
           f"SSIM {ssim_gain:+.4f} lower than allowed" if ssim_gain < -MAX_SSIM_LOSS else "")
    return {"psnr_gain_db": gain, "psnr_gain_ci95": ci, "ssim_gain": ssim_gain,
            "beats": not why, "why": why}


def engine_in_profile(profile: Any, card: Any) -> tuple[str, str, Path]:
    """Where the profile uses an engine like ``card``: (``refocus`` or ``virtual``, channel,
    the engine file it names now)."""
    if card.task == "refocus":
        engines = profile.refocus_engines()
        if card.output in engines:
            return "refocus", card.output, Path(engines[card.output])
        raise ProfileError(f"profile '{profile.name}' refocuses {sorted(engines) or 'nothing'}; "
                           f"expected a refocus engine for {card.output} to replace")
    same = [v for v in profile.virtual_channels if tuple(v.inputs) == tuple(card.inputs)]
    named = [v for v in same if v.name == card.output] or same
    if len(named) != 1:
        raise ProfileError(f"profile '{profile.name}': expected one virtual channel "
                           f"{card.output} from {list(card.inputs)} to replace, found "
                           f"{[v.name for v in named] or 'none'}")
    return "virtual", named[0].name, Path(named[0].engine)


def install(profile_path: Path, engine: Path, kind: str, channel: str) -> Path:
    """Copy ``engine`` beside the profile and point the profile's ``channel`` at it; the
    engine's new path."""
    from acquire_vf.config import PROFILES_DIR, load_profile

    profile_path = profile_path.resolve()
    if PROFILES_DIR.resolve() in profile_path.parents:
        raise ProfileError(f"'{profile_path}' is a shipped profile and is never written; copy "
                           "it first (acquire-vf profile copy demo my-profile.toml) and install "
                           "into the copy")
    dest = _free_name(profile_path.parent / "engines" / engine.name, engine)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copy2(engine, dest)
        shutil.copy2(engine.with_suffix(".json"), dest.with_suffix(".json"))
    rel = Path(os.path.relpath(dest, profile_path.parent)).as_posix()
    text = profile_path.read_text(encoding="utf-8")
    new_text = _point(text, kind, channel, rel, profile_path)
    tmp = profile_path.with_name(profile_path.name + ".installing")
    tmp.write_text(new_text, encoding="utf-8")
    try:
        load_profile(tmp)
    except Exception as e:
        tmp.unlink()
        raise ProfileError(f"'{profile_path}' would not load with the new engine ({e}); left "
                           "unchanged") from None
    shutil.copy2(profile_path, profile_path.with_name(profile_path.name + ".before-install"))
    os.replace(tmp, profile_path)
    return dest


def _free_name(dest: Path, engine: Path) -> Path:
    """``dest``, or ``dest`` with -2, -3 ... when another engine already has that name."""
    k, cand = 1, dest
    while cand.exists() and cand.read_bytes() != engine.read_bytes():
        k += 1
        cand = dest.with_name(f"{dest.stem}-{k}{dest.suffix}")
    return cand


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")
_VALUE = r'^(\s*{key}\s*=\s*")([^"\n]*)(".*)$'


def _point(text: str, kind: str, channel: str, rel: str, where: Path) -> str:
    """``text`` with the one line that names ``channel``'s engine naming ``rel`` instead."""
    lines = text.splitlines(keepends=True)
    table = ""
    block: list[int] = []  # line numbers of the current [[virtual_channels]] entry
    hits: list[int] = []

    def scan_block() -> None:
        names = [i for i in block if re.match(_VALUE.format(key="name"), lines[i])]
        if any(re.match(_VALUE.format(key="name"), lines[i]).group(2) == channel  # type: ignore[union-attr]
               for i in names):
            hits.extend(i for i in block if re.match(_VALUE.format(key="engine"), lines[i]))

    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            if table == "virtual_channels":
                scan_block()
            table, block = m.group(2), []
            continue
        if kind == "refocus" and table == "autofocus.engines" and \
                re.match(_VALUE.format(key=re.escape(channel)), line):
            hits.append(i)
        if table == "virtual_channels":
            block.append(i)
    if table == "virtual_channels":
        scan_block()
    if len(hits) != 1:
        where_s = ("[autofocus.engines]" if kind == "refocus"
                   else "a [[virtual_channels]] entry")
        raise ProfileError(f"'{where}': expected one line naming {channel}'s engine in "
                           f"{where_s}, found {len(hits)}; set it by hand to '{rel}'")
    i = hits[0]
    key = re.escape(channel) if kind == "refocus" else "engine"
    lines[i] = re.sub(_VALUE.format(key=key), lambda m: f"{m.group(1)}{rel}{m.group(3)}",
                      lines[i].rstrip("\n")) + ("\n" if lines[i].endswith("\n") else "")
    return "".join(lines)


def write_comparison(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
