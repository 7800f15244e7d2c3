"""What a run's dataset will hold, fixed before the first frame."""

from __future__ import annotations

from collections.abc import Iterable

from acquire_vf._frames import ChannelInfo
from acquire_vf.acquisition._plan import RunPlan
from acquire_vf.backends import BackendInfo
from acquire_vf.config import Profile
from acquire_vf.pipeline import Stage
from acquire_vf.storage import DatasetLayout


def dataset_layout(profile: Profile, plan: RunPlan, stages: Iterable[Stage],
                   info: BackendInfo) -> DatasetLayout:
    """Physical channels in plan order, then fallback exposures, then the stages' virtual
    channels; the plan's positions and z offsets; the backend's frame format."""
    physical: list[str] = []
    for name in plan.channels:
        if name not in physical and name not in plan.optional:
            physical.append(name)
    channels = tuple(ChannelInfo(n) for n in physical)
    channels += tuple(ChannelInfo(n) for n in sorted(plan.optional))
    channels += tuple(c for s in stages for c in s.outputs)
    extra = {"specimen": profile.specimen.model_dump(mode="json"),
             "acquisition_backend": info.name, "interval_s": profile.acquisition.interval_s}
    if plan.sequence is not None:
        extra["plan"] = plan.sequence.model_dump(mode="json", exclude_defaults=True)
    return DatasetLayout(
        channels=channels, shape=info.shape, dtype=info.dtype,
        positions=tuple(plan.positions), z_offsets_um=plan.z_offsets_um,
        pixel_size_um=profile.camera.pixel_size_um, bit_depth=profile.camera.bit_depth,
        profile=profile.name, extra=extra)
