"""The live processing chain: a latest-frame slot feeding pluggable stages on their own thread."""

from acquire_vf.focus import focus_score
from acquire_vf.pipeline._assembly import RunStages
from acquire_vf.pipeline._chain import Pipeline, virtual_frame
from acquire_vf.pipeline._engine_stages import (
    UNCERTAINTY,
    FocusEstimateStage,
    RefocusStage,
    SynthesisStage,
    refocus_range,
)
from acquire_vf.pipeline._gate import GateDecision, RefocusGate, gate_for
from acquire_vf.pipeline._protocol import FrameSet, Stage, StageFault, check_stage
from acquire_vf.pipeline._stages import FocusScoreStage

__all__ = [
    "UNCERTAINTY", "FocusEstimateStage", "FocusScoreStage", "FrameSet", "GateDecision",
    "Pipeline", "RefocusGate", "RefocusStage", "RunStages", "Stage", "StageFault",
    "SynthesisStage",
    "check_stage",
    "focus_score", "gate_for", "refocus_range", "virtual_frame"
]
