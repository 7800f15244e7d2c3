"""Inference engines: one ``Engine`` interface over TensorRT, ONNX Runtime and PyTorch.

Importing this package loads none of the backends; :func:`create_engine` imports the one the
profile chooses.
"""

from acquire_vf.inference._engine import InferenceError, TiledEngine
from acquire_vf.inference._errors import BackendUnavailable, EngineFileError
from acquire_vf.inference._factory import create_engine
from acquire_vf.inference._protocol import Engine, Runner
from acquire_vf.inference._stages import RefocusStage, SynthesisStage
from acquire_vf.inference._tiling import run_tiled

__all__ = ["BackendUnavailable", "Engine", "EngineFileError", "InferenceError", "RefocusStage",
           "Runner", "SynthesisStage", "TiledEngine", "create_engine", "run_tiled"]
