"""Display (extra ``gui``: pyqtgraph with PySide6). Imported only when a window is wanted:
importing this package loads no Qt; its classes do, on first use."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"LiveWindow": "_live", "DatasetViewer": "_dataset", "status_text": "_live",
         "GuiThreadCollector": "_gc"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"acquire_vf.display.{_LAZY[name]}"), name)
    raise AttributeError(name)
