"""Virtual channels as live layers inside a napari-micromanager session: a dock widget (npe2
contribution ``acquire-vf.attach_widget``, in the ``napari`` extra) that attaches a profile's
pipeline to pymmcore-plus's core (:func:`acquire_vf.attach`); each virtual frame updates a
layer named ``virtual:NAME``, coloured as the reader colours virtual channels and carrying
the same metadata (``channel_type``, engine, sha256, inputs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from acquire_vf._frames import Frame

log = logging.getLogger(__name__)
_COLOURMAP = {"virtual": "red", "uncertainty": "gray"}
"""As the dataset reader colours them (``interop._napari``)."""


class VirtualLayers:
    """Keeps one napari layer per virtual channel (and position) up to date with the latest
    frame; call :meth:`show` on the GUI thread (the widget does)."""

    def __init__(self, viewer: Any, outputs: tuple[Any, ...]) -> None:
        self.viewer = viewer
        self.info = {c.name: c for c in outputs}
        self.updates = 0

    def show(self, frame: Frame) -> None:
        c = self.info.get(frame.id.c)
        if c is None:
            return
        kind = "uncertainty" if c.name.startswith("uncertainty:") else "virtual"
        name = c.stored_name + (f" @Pos{frame.id.p}" if frame.id.p else "")
        meta = {"acquire-vf": {**c.as_dict(), "channel_type": kind, "t": frame.id.t,
                               "qc": dict(frame.qc)}}
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = frame.pixels
            layer.metadata.update(meta)
        else:
            self.viewer.add_image(frame.pixels, name=name, colormap=_COLOURMAP[kind],
                                  blending="additive", visible=kind == "virtual",
                                  metadata=meta)
        self.updates += 1


def attach_widget(napari_viewer: Any) -> Any:
    """The dock widget: a profile, an output folder and Attach/Detach, on the core
    napari-micromanager uses (``CMMCorePlus.instance()``)."""
    from qtpy import QtCore, QtWidgets

    class AttachWidget(QtWidgets.QWidget):
        frame_ready = QtCore.Signal(object)

        def __init__(self, viewer: Any) -> None:
            super().__init__()
            self.viewer = viewer
            self.attached: Any = None
            self.layers: Any = None
            self.profile = QtWidgets.QLineEdit("demo")
            self.out = QtWidgets.QLineEdit(str(Path.home() / "acquire-vf-attached"))
            self.button = QtWidgets.QPushButton("Attach")
            self.status = QtWidgets.QLabel("not attached")
            form = QtWidgets.QFormLayout(self)
            form.addRow("profile", self.profile)
            form.addRow("save to", self.out)
            form.addRow(self.button)
            form.addRow(self.status)
            self.button.clicked.connect(self.toggle)
            self.frame_ready.connect(self._show)  # queued onto the GUI thread

        def toggle(self) -> None:
            if self.attached is not None:
                self.attached.detach()
                self.attached = None
                self.button.setText("Attach")
                self.status.setText("not attached")
                return
            from pymmcore_plus import CMMCorePlus

            from acquire_vf._attach import attach

            try:
                self.attached = attach(CMMCorePlus.instance(), self.profile.text(),
                                       Path(self.out.text()), on_virtual=self.frame_ready.emit)
            except Exception as e:  # noqa: BLE001 - one line in the widget, not a traceback
                self.status.setText(f"cannot attach: {e}")
                return
            self.layers = VirtualLayers(self.viewer, self.attached.outputs)
            self.button.setText("Detach")
            self.status.setText(f"attached: {', '.join(c.name for c in self.attached.outputs)}")

        def _show(self, frame: Frame) -> None:
            if self.layers is not None:
                self.layers.show(frame)

    return AttachWidget(napari_viewer)
