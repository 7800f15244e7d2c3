"""The run loop: a useq plan executed by an acquisition backend, frames to a sink and the
engines, never waiting on either."""

from acquire_vf.acquisition._dose import by_purpose
from acquire_vf.acquisition._event_log import FOCUS_LOG, SENTINEL_LOG, EventLog
from acquire_vf.acquisition._focus import FocusController, make_focus
from acquire_vf.acquisition._layout import dataset_layout
from acquire_vf.acquisition._payloads import (
    FocusCorrection,
    FocusEstimate,
    FocusEvent,
    FocusZScan,
    SentinelFidelity,
    SignCheck,
)
from acquire_vf.acquisition._plan import (
    RunPlan,
    build_plan,
    frame_id,
    load_plan,
    match_channels,
    profile_sequence,
)
from acquire_vf.acquisition._policy import policy_report
from acquire_vf.acquisition._progress import RunProgress
from acquire_vf.acquisition._report import (
    full_protocol_exposures,
    light_dose,
    print_session,
    session_report,
    write_session,
)
from acquire_vf.acquisition._runner import AcquisitionRun
from acquire_vf.acquisition._schedule import Schedule
from acquire_vf.acquisition._signals import RunSignals
from acquire_vf.acquisition._state import RunState, RunStatus
from acquire_vf.acquisition._verify import CheckedChannel, Verifier, make_verifier

__all__ = [
    "FOCUS_LOG", "AcquisitionRun", "CheckedChannel", "FocusController", "FocusCorrection",
    "FocusEstimate", "EventLog", "SENTINEL_LOG",
    "FocusEvent", "FocusZScan", "SentinelFidelity", "SignCheck", "RunPlan", "RunProgress",
    "RunSignals",
    "RunState", "Schedule",
    "RunStatus", "Verifier", "build_plan", "by_purpose", "dataset_layout", "frame_id",
    "full_protocol_exposures", "light_dose", "load_plan", "make_focus", "make_verifier",
    "match_channels", "policy_report", "print_session", "profile_sequence", "session_report",
    "write_session"
]
