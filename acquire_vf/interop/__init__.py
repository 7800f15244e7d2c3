"""acquire-vf in the ecosystem's tools: the napari reader (``napari.yaml``, npe2) and
bioimage.io model packages (:func:`export_bioimageio`)."""

from typing import Any


def export_bioimageio(*args: Any, **kwargs: Any) -> Any:
    """See :func:`acquire_vf.interop._bioimageio.export_bioimageio`."""
    from acquire_vf.interop._bioimageio import export_bioimageio as run

    return run(*args, **kwargs)


__all__ = ["export_bioimageio"]
