"""acquire-vf in the ecosystem's tools: the napari reader (``napari.yaml``, npe2, and
:func:`add_to_viewer` for scripts) and bioimage.io model packages (:func:`export_bioimageio`)."""

from typing import Any


def export_bioimageio(*args: Any, **kwargs: Any) -> Any:
    """See :func:`acquire_vf.interop._bioimageio.export_bioimageio`."""
    from acquire_vf.interop._bioimageio import export_bioimageio as run

    return run(*args, **kwargs)


def add_to_viewer(viewer: Any, path: Any) -> list[Any]:
    """See :func:`acquire_vf.interop._napari.add_to_viewer`."""
    from acquire_vf.interop._napari import add_to_viewer as run

    return run(viewer, path)


__all__ = ["add_to_viewer", "export_bioimageio"]
