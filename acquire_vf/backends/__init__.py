"""Acquisition backends: what executes the run's events and delivers frames.

The :class:`AcquisitionBackend` protocol, and three implementations, each imported only when
chosen: pycromanager (Micro-Manager: the demo configuration or an installation in-process, or
the application over its bridge), memory (the simulated specimen, no Micro-Manager) and replay
(a saved dataset played back).
"""

from acquire_vf.backends._connect import (
    Microscope,
    check_profile_against_hardware,
    connect,
    demo_adapter_dir,
)
from acquire_vf.backends._factory import BACKENDS, open_backend, specimen_for
from acquire_vf.backends._faults import (
    AcquisitionStopped,
    DeviceFault,
    FaultInjector,
    as_device_fault,
)
from acquire_vf.backends._protocol import (
    AcquisitionBackend,
    BackendInfo,
    BackendWrapper,
    Gate,
    RawImage,
    RunEvent,
    check_backend,
    event_channel,
    event_kind,
)

__all__ = ["BACKENDS", "AcquisitionBackend", "AcquisitionStopped", "BackendInfo",
           "BackendWrapper", "DeviceFault",
           "FaultInjector", "Gate", "Microscope", "RawImage", "RunEvent", "as_device_fault",
           "check_backend", "check_profile_against_hardware", "connect", "demo_adapter_dir",
           "event_channel", "event_kind", "open_backend", "specimen_for"]
