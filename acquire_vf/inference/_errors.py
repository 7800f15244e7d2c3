"""Inference errors, each one line for the user."""

from __future__ import annotations

from acquire_vf._errors import AcquireVFError


class BackendUnavailable(AcquireVFError):
    """A backend cannot run here (not installed, no GPU, unsupported precision)."""

    exit_code = 8


class EngineFileError(AcquireVFError):
    """An engine file (ONNX or TensorRT plan) is corrupt or does not fit."""

    exit_code = 7
