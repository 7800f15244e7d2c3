"""Inference engines: one ``Engine`` interface over TensorRT, ONNX Runtime and PyTorch.

Importing this package loads none of the backends; :func:`create_engine` imports the one the
profile chooses.
"""

from typing import Any

from acquire_vf.inference._checks import INPUT_FLAGS, check_inputs, input_stats
from acquire_vf.inference._choice import (
    ChoiceKey,
    choice_key,
    choice_record,
    cpu_model,
    save_choice,
)
from acquire_vf.inference._deconvolution import (
    DeconvolutionRefocus,
    DeconvolutionResult,
    transfer_function,
)
from acquire_vf.inference._defocus import (
    DefocusEstimator,
    create_estimator,
    create_estimator_beside,
    estimator_beside,
    frame_normalise,
)
from acquire_vf.inference._engine import InferenceError, TiledEngine
from acquire_vf.inference._equalise import equalise
from acquire_vf.inference._errors import BackendUnavailable, EngineFileError
from acquire_vf.inference._factory import cpu_threads, create_engine, first_runner, make_runner
from acquire_vf.inference._predict import predict
from acquire_vf.inference._protocol import Engine, Runner
from acquire_vf.inference._tiling import run_tiled, stitched_shape
from acquire_vf.inference._tta import infer_with_uncertainty, spread_frame

__all__ = [
    "INPUT_FLAGS", "BackendUnavailable", "ChoiceKey", "choice_key", "choice_record",
    "cpu_model", "cpu_threads", "make_runner", "save_choice", "DeconvolutionRefocus",
    "DeconvolutionResult",
    "DefocusEstimator", "Engine", "EngineFileError",
    "InferenceError", "OnnxRuntimeRunner", "OpenVINORunner", "Runner", "TensorRTRunner",
    "TiledEngine",
    "TorchRunner", "check_inputs", "create_engine",
    "create_estimator", "create_estimator_beside", "equalise", "estimator_beside",
    "first_runner", "frame_normalise", "infer_with_uncertainty",
    "input_stats", "predict", "run_tiled", "spread_frame", "stitched_shape", "transfer_function"
]


def __getattr__(name: str) -> Any:
    """Backends that import torch or TensorRT load on first use only."""
    if name == "TorchRunner":
        from acquire_vf.inference._torch import TorchRunner

        return TorchRunner
    if name == "OnnxRuntimeRunner":
        from acquire_vf.inference._onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner
    if name == "OpenVINORunner":
        from acquire_vf.inference._openvino import OpenVINORunner

        return OpenVINORunner
    if name == "TensorRTRunner":
        from acquire_vf.inference._tensorrt import TensorRTRunner

        return TensorRTRunner
    raise AttributeError(name)
