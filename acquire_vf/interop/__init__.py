"""acquire-vf in the ecosystem's tools: the napari reader (``napari.yaml``, npe2)."""
