"""The public dataset layouts the paper used: file naming, parsing and leak-free splits.

One module writes (the simulator) and reads (the training loaders) these names, so simulated
data and the real downloads go through the same code:

- BBBC006 (U2OS z-stacks, 20x): ``BBBC006_v1_images_z_{00..33}/`` (2 µm apart, ``z_16`` in
  focus), files ``mcf-z-stacks-03212011_{well}_s{site}_w{1|2}{id}.tif``; w1 Hoechst, w2 phalloidin.
  The simulator adds w3 (RNA) and w4 (AGP) z-stacks in the same naming, which the real data set
  does not have, to train refocus engines for the Cell Painting channels the demo acquires.
- BBBC022 (U2OS Cell Painting): ``{plate}/{prefix}_{well}_s{site}_w{1..5}{id}.tif``; w1 DNA,
  w2 ER, w3 RNA, w4 AGP, w5 Mito.
- Paired folders (e.g. MDA-MB-231): ``{channel}/{name}.tif``, one folder per channel, the same
  file name for the same field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BBBC006_PLANES = 34
BBBC006_FOCUS_INDEX = 16
BBBC006_Z_STEP_UM = 2.0
BBBC006_CHANNELS = {1: "DNA", 2: "actin", 3: "RNA", 4: "AGP"}  # w3, w4: simulated only
BBBC022_CHANNELS = {1: "DNA", 2: "ER", 3: "RNA", 4: "AGP", 5: "Mito"}
MDA231_CHANNELS = ("PhC", "DAPI", "F-actin", "Vinculin")

_BBBC006_DIR = re.compile(r"^BBBC006_v1_images_z_(?P<z>\d{2})$")
_BBBC006_FILE = re.compile(
    r"^mcf-z-stacks-03212011_(?P<well>[a-p]\d{2})_s(?P<site>\d+)_w(?P<w>[1-9])"
    r"(?P<uid>[0-9A-Fa-f-]*)\.tif$")
_BBBC022_FILE = re.compile(
    r"^(?P<prefix>.+)_(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<w>[1-5])"
    r"(?P<uid>[0-9A-Fa-f-]*)\.tif$")


def well_name(index: int, upper: bool = False) -> str:
    """Wells of a 384-well plate in row order: a01 ... a24, b01, ..."""
    row = "abcdefghijklmnop"[index // 24 % 16]
    name = f"{row}{index % 24 + 1:02d}"
    return name.upper() if upper else name


def uid(*parts: object) -> str:
    """A stable GUID-like id, as the instrument appends to file names."""
    h = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}".upper()


def bbbc006_path(root: Path, z_index: int, well: str, site: int, w: int, seed: object) -> Path:
    return (root / f"BBBC006_v1_images_z_{z_index:02d}" /
            f"mcf-z-stacks-03212011_{well}_s{site}_w{w}{uid(seed, well, site, w)}.tif")


def bbbc022_path(root: Path, plate: str, well: str, site: int, w: int, seed: object,
                 prefix: str = "IXMtest") -> Path:
    return root / plate / f"{prefix}_{well}_s{site}_w{w}{uid(seed, plate, well, site, w)}.tif"


@dataclass(frozen=True)
class ImageRef:
    """One file of a public layout and what its name says."""

    path: Path
    group: str
    """Plate (BBBC022) or dataset root name (BBBC006, paired folders)."""
    well: str
    site: int
    channel: str
    z_um: float = 0.0

    @property
    def field_key(self) -> tuple[str, str, int]:
        """Identity of the imaged field: splits are made on this, never on patches."""
        return (self.group, self.well, self.site)


def scan_bbbc006(root: str | Path) -> list[ImageRef]:
    """Every plane of every site in a BBBC006 folder (real or simulated).

    A ``channels.json`` in the folder (``{"w": "name"}``, written by ``acquire-vf calibrate``
    for channels the data set does not have) names the ``w`` numbers; otherwise they are the
    data set's own (:data:`BBBC006_CHANNELS`)."""
    root = Path(root)
    names = bbbc006_channels(root)
    refs = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        m = _BBBC006_DIR.match(d.name)
        if not m or not d.is_dir():
            continue
        z_um = (int(m["z"]) - BBBC006_FOCUS_INDEX) * BBBC006_Z_STEP_UM
        for f in sorted(d.iterdir()):
            fm = _BBBC006_FILE.match(f.name)
            if fm and int(fm["w"]) in names:
                refs.append(ImageRef(f, root.name, fm["well"], int(fm["site"]),
                                     names[int(fm["w"])], z_um))
    return refs


def bbbc006_channels(root: Path) -> dict[int, str]:
    """``w`` number -> channel name of a BBBC006-layout folder."""
    f = root / "channels.json"
    if not f.is_file():
        return dict(BBBC006_CHANNELS)
    import json

    try:
        return {int(w): str(n) for w, n in json.loads(f.read_text()).items()}
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"'{f}': expected {{\"w number\": \"channel name\"}}, got "
                         f"unreadable content ({e})") from None


def autofocus_pairs(refs: Iterable[ImageRef], channel: str = "DNA",
                    z_range: tuple[float, float] = (-12.0, 8.0),
                    exclude: tuple[float, float] = (-2.0, 2.0)) -> list[tuple[ImageRef, ImageRef]]:
    """(defocused, in focus) pairs as the paper trained its autofocus model.

    Every plane with ``z_range[0] <= z <= z_range[1]`` and outside the closed interval
    ``exclude`` (too close to focus to tell apart) is paired with the in-focus plane of the
    same site and channel.
    """
    refs = [r for r in refs if r.channel == channel]
    focus = {r.field_key: r for r in refs if r.z_um == 0.0}
    pairs = []
    for r in refs:
        inside = z_range[0] <= r.z_um <= z_range[1]
        excluded = exclude[0] <= r.z_um <= exclude[1]
        if inside and not excluded and r.field_key in focus:
            pairs.append((r, focus[r.field_key]))
    return pairs


def scan_bbbc022(root: str | Path) -> list[dict[str, ImageRef]]:
    """Sites of a BBBC022 folder (plate subfolders), each as {channel name: ImageRef}."""
    root = Path(root)
    sites: dict[tuple[str, str, int], dict[str, ImageRef]] = {}
    plates = [p for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    for plate in plates:
        for f in sorted(plate.iterdir()):
            m = _BBBC022_FILE.match(f.name)
            if m:
                ref = ImageRef(f, plate.name, m["well"], int(m["site"]),
                               BBBC022_CHANNELS[int(m["w"])])
                sites.setdefault(ref.field_key, {})[ref.channel] = ref
    return [s for _, s in sorted(sites.items()) if len(s) == len(BBBC022_CHANNELS)]


def scan_paired(root: str | Path, channels: Sequence[str]) -> list[dict[str, ImageRef]]:
    """Fields of a paired-folder dataset present in every one of ``channels``."""
    root = Path(root)
    missing = [c for c in channels if not (root / c).is_dir()]
    if missing:
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"paired dataset '{root}': expected a folder per channel {list(channels)}, "
            f"missing {missing} (found {have})")
    names = set.intersection(*({f.name for f in (root / c).glob("*.tif")} for c in channels))
    return [{c: ImageRef(root / c / name, root.name, Path(name).stem, 1, c) for c in channels}
            for name in sorted(names)]


def split_of(key: tuple[object, ...], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
             seed: int = 0) -> str:
    """``train``, ``val`` or ``test`` for a field, by a stable hash of its (well, site) key.

    Every patch of a field lands in the same split, so no field leaks across splits; the
    assignment does not depend on which other fields exist.
    """
    h = int(hashlib.sha256(repr((seed, key)).encode()).hexdigest()[:12], 16) / 16**12
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


def assign_splits(keys: Iterable[tuple[object, ...]], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  ) -> dict[tuple[object, ...], str]:
    """:func:`split_of` for each field, adjusted so that train, validation and test each get
    at least one field when there are three or more (a small set must still validate and
    test). Adjustments move a field from the largest split, chosen deterministically."""
    keys = sorted(set(keys), key=repr)
    out = {k: split_of(k, fractions, seed) for k in keys}
    if len(keys) >= 3:
        for need in ("train", "val", "test"):
            if need in out.values():
                continue
            sizes = {s: sum(v == s for v in out.values()) for s in ("train", "val", "test")}
            donor = max(sizes, key=lambda s: (sizes[s], s == "train"))
            moved = max((k for k in keys if out[k] == donor), key=lambda k: repr((seed, need, k)))
            out[moved] = need
    return out
