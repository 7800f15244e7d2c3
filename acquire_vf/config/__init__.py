"""Hardware profiles: validated, frozen descriptions of a microscope and an experiment."""

from acquire_vf.config._copy import copy_profile
from acquire_vf.config._faults import Debug, FaultKind, FaultPolicy, InjectedFault
from acquire_vf.config._load import (
    PROFILES_DIR,
    demo_variant,
    load_profile,
    merged,
    profile_from_dict,
    resolve_profile_path,
)
from acquire_vf.config._profile import (
    Acceptance,
    AttachConnection,
    Autofocus,
    AutofocusAlways,
    AutofocusClosedLoop,
    AutofocusOff,
    AutofocusWhenDefocused,
    Camera,
    Compute,
    DemoConnection,
    HeadlessConnection,
    MemoryConnection,
    Perturbation,
    PhysicalChannel,
    Profile,
    Protocol,
    PyMMCorePlusConnection,
    Queues,
    Refocusing,
    RefocusPolicy,
    Specimen,
    Storage,
    Tiling,
    Verification,
    VirtualChannel,
    XYPosition,
)
from acquire_vf.config._recipe import (
    PRESET_DEPTH,
    REPO_ROOT,
    DefocusRecipe,
    HeldOutSet,
    Recipe,
    Target,
    data_root,
    load_defocus_recipe,
    load_recipe,
    recipe_task,
    resolve_recipe_path,
    simulated_root,
)
from acquire_vf.config._toml import plain_demo_profile, toml_lines, write_profile

__all__ = [
    "PRESET_DEPTH", "PROFILES_DIR", "REPO_ROOT", "Acceptance", "AttachConnection", "Autofocus",
    "AutofocusAlways", "AutofocusClosedLoop", "AutofocusOff", "AutofocusWhenDefocused",
    "Camera", "Compute", "Debug", "DefocusRecipe", "DemoConnection", "FaultKind", "FaultPolicy",
    "HeadlessConnection", "HeldOutSet", "InjectedFault",
    "MemoryConnection", "Perturbation", "PhysicalChannel", "Profile", "Protocol",
    "PyMMCorePlusConnection", "Queues",
    "Recipe", "RefocusPolicy", "Refocusing", "Specimen", "Storage", "Target", "Tiling",
    "Verification",
    "VirtualChannel", "XYPosition",
    "copy_profile", "data_root", "demo_variant", "load_defocus_recipe", "load_profile",
    "load_recipe", "merged", "plain_demo_profile", "profile_from_dict", "recipe_task",
    "resolve_profile_path", "resolve_recipe_path", "simulated_root", "toml_lines",
    "write_profile",
]
