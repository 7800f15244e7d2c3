"""Inference errors (defined with every other error in :mod:`acquire_vf._errors`)."""

from acquire_vf._errors import BackendUnavailable, EngineFileError

__all__ = ["BackendUnavailable", "EngineFileError"]
