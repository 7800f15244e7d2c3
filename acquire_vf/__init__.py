"""acquire-vf: real-time virtual refocusing and virtual fluorescence for Micro-Manager.

Importing this package stays light: no torch, TensorRT, ONNX Runtime or Qt. Those load lazily
in the subpackages that need them, so a microscope PC without them can still acquire.
"""

from acquire_vf._errors import AcquireVFError

__version__ = "0.1.0"
__all__ = ["AcquireVFError", "__version__"]
