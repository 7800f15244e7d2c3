"""acquire-vf: real-time virtual refocusing and virtual fluorescence for Micro-Manager.

Importing this package stays light: no torch, TensorRT, ONNX Runtime or Qt. Those load lazily
in the subpackages that need them, so a microscope PC without them can still acquire.
"""

from typing import Any

from acquire_vf._errors import AcquireVFError

__version__ = "0.1.0"
__all__ = ["AcquireVFError", "__version__", "acquire", "attach"]


def __getattr__(name: str) -> Any:
    if name == "acquire":  # loaded on first use: the session pulls in Micro-Manager's bridge
        from acquire_vf._api import acquire

        return acquire
    if name == "attach":  # virtual channels inside a pymmcore-plus run another program drives
        from acquire_vf._attach import attach

        return attach
    raise AttributeError(f"module 'acquire_vf' has no attribute '{name}'")
