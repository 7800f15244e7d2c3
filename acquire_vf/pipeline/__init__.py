"""The live processing chain: a latest-frame slot feeding pluggable stages on their own thread."""

from acquire_vf.pipeline._chain import Pipeline, virtual_frame
from acquire_vf.pipeline._protocol import FrameSet, Stage, check_stage
from acquire_vf.pipeline._stages import FocusScoreStage, focus_score

__all__ = ["FocusScoreStage", "FrameSet", "Pipeline", "Stage", "check_stage", "focus_score",
           "virtual_frame"]
