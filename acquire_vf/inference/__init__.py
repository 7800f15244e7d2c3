"""Inference engines: one ``Engine`` interface over TensorRT, ONNX Runtime and PyTorch.

Importing this package loads none of the backends; :func:`create_engine` imports the one the
profile chooses.
"""

from typing import Any

from acquire_vf.inference._engine import InferenceError, TiledEngine
from acquire_vf.inference._errors import BackendUnavailable, EngineFileError
from acquire_vf.inference._factory import create_engine
from acquire_vf.inference._predict import predict
from acquire_vf.inference._protocol import Engine, Runner
from acquire_vf.inference._tiling import run_tiled

__all__ = ["BackendUnavailable", "Engine", "EngineFileError", "InferenceError", "Runner",
           "TiledEngine", "TorchRunner", "create_engine", "predict", "run_tiled"]


def __getattr__(name: str) -> Any:
    """Backends that import torch or TensorRT load on first use only."""
    if name == "TorchRunner":
        from acquire_vf.inference._torch import TorchRunner

        return TorchRunner
    raise AttributeError(name)
