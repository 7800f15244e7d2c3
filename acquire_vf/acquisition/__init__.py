"""The live acquisition loop: Micro-Manager → writer and pipeline, never waiting on either."""

from acquire_vf.acquisition._events import build_events
from acquire_vf.acquisition._report import print_session, session_report, write_session
from acquire_vf.acquisition._runner import AcquisitionRun, RunState, RunStatus, prepare_output
from acquire_vf.acquisition._signals import RunSignals

__all__ = ["AcquisitionRun", "RunSignals", "RunState", "RunStatus", "build_events",
           "prepare_output", "print_session", "session_report", "write_session"]
