"""OME-XML for a dataset written frame by frame in arrival order.

Frames arrive in acquisition order, virtual ones later and possibly skipped, so pages are not in
a fixed dimension order. Each plane is therefore mapped explicitly (``TiffData IFD=... FirstT=...``)
and missing planes are simply absent; tifffile, Bio-Formats (Fiji) and napari read that layout.
Virtual channels carry the ``virtual:`` name prefix and a MapAnnotation with their provenance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import quoteattr

from acquire_vf.storage._layout import DatasetLayout

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
ANNOTATION_NS = "acquire-vf/virtual-channel"
_PIXEL_TYPES = {"uint8": "uint8", "uint16": "uint16", "float32": "float"}


def build_ome_xml(layout: DatasetLayout, frames: Iterable[dict[str, Any]],
                  qc_summary: dict[str, dict[str, int]] | None = None,
                  annotations: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """OME-XML for ``layout`` with one Image per stage position.

    ``frames`` are journal records: ``ifd``, ``t``, ``p``, ``z``, ``c`` (channel index) and
    optional ``elapsed_ms``, ``exposure_ms``, ``x_um``, ``y_um``, ``z_um``. ``annotations``
    (namespace -> records) become one MapAnnotation per record (e.g. each sentinel pair's
    fidelity).
    """
    by_pos: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(layout.positions))}
    for f in frames:
        by_pos.setdefault(int(f["p"]), []).append(f)
    h, w = layout.shape
    ptype = _PIXEL_TYPES[layout.dtype]
    anns = _annotation_xml(layout, qc_summary, annotations)
    images = []
    for p, recs in sorted(by_pos.items()):
        size_t = max((int(r["t"]) for r in recs), default=0) + 1
        pos = layout.positions[p] if p < len(layout.positions) else {"name": f"Pos{p}"}
        chans = "".join(
            f'<Channel ID="Channel:{p}:{i}" Name={quoteattr(c.stored_name)} SamplesPerPixel="1">'
            + (f'<AnnotationRef ID="Annotation:{i}"/>' if c.role == "virtual" else "")
            + "</Channel>"
            for i, c in enumerate(layout.channels)
        )
        tiffdata = "".join(
            f'<TiffData IFD="{r["ifd"]}" FirstT="{r["t"]}" FirstC="{r["c"]}" '
            f'FirstZ="{r["z"]}" PlaneCount="1"/>' for r in recs
        )
        planes = "".join(_plane(r) for r in recs)
        images.append(
            f'<Image ID="Image:{p}" Name={quoteattr(str(pos.get("name") or f"Pos{p}"))}>'
            f'<Pixels ID="Pixels:{p}" DimensionOrder="XYCZT" Type="{ptype}" '
            f'SizeX="{w}" SizeY="{h}" SizeZ="{len(layout.z_offsets_um)}" '
            f'SizeC="{len(layout.channels)}" SizeT="{size_t}" '
            f'PhysicalSizeX="{layout.pixel_size_um}" PhysicalSizeXUnit="µm" '
            f'PhysicalSizeY="{layout.pixel_size_um}" PhysicalSizeYUnit="µm" '
            f'SignificantBits="{layout.bit_depth}">'
            f"{chans}{tiffdata}{planes}</Pixels></Image>"
        )
    spec = layout.extra.get("specimen") or {}
    description = ""
    if spec.get("kind") == "simulated":
        description = (f"<Description>SIMULATED PIXELS: acquire-vf simulated specimen "
                       f"({_esc(str(spec.get('sample')))}, seed {spec.get('seed')}); the camera "
                       f"supplied only the timing.</Description>")
    images = [i.replace("<Pixels ", description + "<Pixels ", 1) for i in images]
    sa = f"<StructuredAnnotations>{''.join(anns)}</StructuredAnnotations>" if anns else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{OME_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd" Creator="acquire-vf">'
        f"{''.join(images)}{sa}</OME>"
    )


def _annotation_xml(layout: DatasetLayout, qc_summary: dict[str, dict[str, int]] | None,
                    annotations: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """Each virtual channel's provenance, then one MapAnnotation per annotation record."""
    anns = []
    for v_i, ch in enumerate(layout.channels):
        if ch.role != "virtual":
            continue
        kv = {"role": "virtual", "engine": ch.engine, "sha256": ch.sha256, "backend": ch.backend,
              "precision": ch.precision, "inputs": ",".join(ch.inputs)}
        for flag, n in sorted((qc_summary or {}).get(ch.name, {}).items()):
            kv[f"qc.{flag}"] = str(n)
        vals = "".join(f"<M K={quoteattr(k)}>{_esc(str(v))}</M>" for k, v in kv.items()
                       if v is not None)
        anns.append(f'<MapAnnotation ID="Annotation:{v_i}" Namespace="{ANNOTATION_NS}">'
                    f"<Value>{vals}</Value></MapAnnotation>")
    n = len(layout.channels)
    for ns, recs in (annotations or {}).items():
        for rec in recs:
            vals = "".join(f"<M K={quoteattr(str(k))}>{_esc(str(v))}</M>"
                           for k, v in rec.items() if v is not None)
            anns.append(f'<MapAnnotation ID="Annotation:{n}" Namespace={quoteattr(ns)}>'
                        f"<Value>{vals}</Value></MapAnnotation>")
            n += 1
    return anns


def _plane(r: dict[str, Any]) -> str:
    attrs = [f'TheT="{r["t"]}"', f'TheC="{r["c"]}"', f'TheZ="{r["z"]}"']
    if r.get("elapsed_ms") is not None:
        attrs.append(f'DeltaT="{float(r["elapsed_ms"]):.3f}" DeltaTUnit="ms"')
    if r.get("exposure_ms") is not None:
        attrs.append(f'ExposureTime="{float(r["exposure_ms"]):g}" ExposureTimeUnit="ms"')
    for key, attr in (("x_um", "PositionX"), ("y_um", "PositionY"), ("z_um", "PositionZ")):
        if r.get(key) is not None:
            attrs.append(f'{attr}="{float(r[key]):g}" {attr}Unit="µm"')
    return f"<Plane {' '.join(attrs)}/>"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
