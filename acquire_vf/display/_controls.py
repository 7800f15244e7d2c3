"""The run box of the live window (Start, Pause/Resume, Stop) and what closing the window does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RunControls:
    """Start / Pause / Stop over a run object with ``state``, ``pause``, ``resume``, ``cancel``.

    ``start_fn`` begins the run (the session's thread); the buttons enable as the run moves on.
    """

    def __init__(self, QtWidgets: Any, run: Any, start_fn: Callable[[], None] | None) -> None:
        self.run, self._start_fn = run, start_fn
        self.started = False
        self.box = QtWidgets.QGroupBox("run")
        lay = QtWidgets.QHBoxLayout(self.box)
        self.start_button = QtWidgets.QPushButton("Start")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        for b in self.buttons:
            lay.addWidget(b)
        self.pause_button.setEnabled(False)
        self.stop_button.setEnabled(False)

    @property
    def buttons(self) -> tuple[Any, Any, Any]:
        return self.start_button, self.pause_button, self.stop_button

    def start(self) -> None:
        if self.started or self._start_fn is None:
            return
        self.started = True
        self.start_button.setEnabled(False)
        self.pause_button.setEnabled(True)
        self.stop_button.setEnabled(True)
        self._start_fn()

    def toggle_pause(self) -> None:
        if self.run is None:
            return
        from acquire_vf.acquisition import RunState

        if self.run.state == RunState.PAUSED:
            self.run.resume()
            self.pause_button.setText("Pause")
        else:
            self.run.pause()
            self.pause_button.setText("Resume")

    def stop(self) -> None:
        if self.run is not None:
            self.run.cancel()
        self.pause_button.setEnabled(False)
        self.stop_button.setEnabled(False)

    def finished(self) -> None:
        for b in self.buttons:
            b.setEnabled(False)


def ask_on_close(QtWidgets: Any, parent: Any) -> str:
    """Ask what closing the window mid-run should do: "stop", "continue" or "cancel"."""
    mb = QtWidgets.QMessageBox
    box = mb(parent)
    box.setWindowTitle("acquire-vf")
    box.setText("The run is still acquiring.")
    stop = box.addButton("Stop the run (save everything)", mb.ButtonRole.AcceptRole)
    keep = box.addButton("Keep acquiring without the window", mb.ButtonRole.ActionRole)
    box.addButton(mb.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    return "stop" if clicked is stop else "continue" if clicked is keep else "cancel"
