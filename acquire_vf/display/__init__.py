"""Display (extra ``gui``: pyqtgraph with PySide6). Imported only when a window is wanted."""
