"""Micro-Manager connection (pycromanager): demo, headless and attach modes."""

from acquire_vf.microscope._connect import (
    Microscope,
    check_profile_against_hardware,
    connect,
    demo_adapter_dir,
)

__all__ = ["Microscope", "check_profile_against_hardware", "connect", "demo_adapter_dir"]
