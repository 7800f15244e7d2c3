"""What every profile section shares: frozen models that reject unknown keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

PROFILE_VERSION: Literal[1] = 1
Backend = Literal["tensorrt", "onnxruntime", "torch", "openvino"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
