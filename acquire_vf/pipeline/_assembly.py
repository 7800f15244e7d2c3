"""A run's stages, by what each does: built once (``_session.build_stages``) and handed whole
to the runner, the focus controller and the verifier, so nothing finds a stage by its name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from acquire_vf._stats import TimePoints
from acquire_vf.pipeline._engine_stages import FocusEstimateStage, RefocusStage, SynthesisStage
from acquire_vf.pipeline._protocol import Stage


@dataclass(frozen=True)
class RunStages:
    """The focus measure, the defocus estimators (their own thread), the refocus stage and the
    synthesis stages, in the order the pipeline runs them."""

    score: Stage | None = None
    """The focus measure of every frame (:class:`~acquire_vf.pipeline.FocusScoreStage`)."""
    estimate: FocusEstimateStage | None = None
    """Closed-loop focus: the defocus estimators, on the focus pipeline's own thread."""
    refocus: RefocusStage | None = None
    synthesis: tuple[Stage, ...] = ()
    """One per virtual channel (:class:`~acquire_vf.pipeline.SynthesisStage`), or any stages a
    caller supplies (tests), run after refocus in this order."""

    @classmethod
    def of(cls, stages: RunStages | Sequence[Stage] | None) -> RunStages:
        """``stages`` as they are, or a plain sequence as the pipeline's stages in order."""
        if isinstance(stages, RunStages):
            return stages
        return cls(synthesis=tuple(stages or ()))

    def pipeline(self) -> list[Stage]:
        """The main pipeline's stages, in order (the estimators run apart)."""
        return [s for s in (self.score, self.refocus, *self.synthesis) if s is not None]

    def __iter__(self) -> Iterator[Stage]:
        """Every stage (the estimators first)."""
        return iter(([self.estimate] if self.estimate is not None else []) + self.pipeline())

    def synthesising(self) -> Iterator[SynthesisStage]:
        """The synthesis stages that run an engine (what the verifier checks)."""
        return (s for s in self.synthesis if isinstance(s, SynthesisStage))

    def checked_planes(self) -> TimePoints:
        """The time points, by position, whose focus a defocus estimator or the refocus stage
        checked: the dose ledger's comparator would have z-scanned them."""
        out = TimePoints()
        for s in (self.estimate, self.refocus):
            if s is not None:
                out = out.union(s.checked)
        return out

    def gate_report(self) -> dict[str, Any]:
        """``session.json``'s ``refocus_gate`` (empty without a refocus stage)."""
        return self.refocus.gate_report() if self.refocus is not None else {}

    def engines(self) -> list[Any]:
        """Every engine, once (to warm them at the camera's frame size)."""
        found: dict[int, Any] = {}
        if self.estimate is not None:
            found.update((id(e), e) for e in self.estimate.estimators.values())
        if self.refocus is not None:
            found.update((id(e), e) for e in self.refocus.engines.values())
        found.update((id(s.engine), s.engine) for s in self.synthesising())
        return list(found.values())
