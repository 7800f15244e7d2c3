"""Hardware profiles: validated, frozen descriptions of a microscope and an experiment."""

from acquire_vf.config._load import (
    PROFILES_DIR,
    load_profile,
    profile_from_dict,
    resolve_profile_path,
)
from acquire_vf.config._profile import (
    AttachConnection,
    Autofocus,
    Camera,
    Compute,
    DemoConnection,
    HeadlessConnection,
    MemoryConnection,
    PhysicalChannel,
    Profile,
    Protocol,
    Queues,
    Specimen,
    Storage,
    Tiling,
    VirtualChannel,
    XYPosition,
)
from acquire_vf.config._toml import plain_demo_profile, toml_lines, write_profile

__all__ = [
    "PROFILES_DIR", "AttachConnection", "Autofocus", "Camera", "Compute", "DemoConnection",
    "HeadlessConnection", "MemoryConnection", "PhysicalChannel", "Profile", "Protocol",
    "Queues", "Specimen", "Storage", "Tiling",
    "VirtualChannel", "XYPosition", "load_profile", "plain_demo_profile", "profile_from_dict",
    "resolve_profile_path", "toml_lines", "write_profile",
]
