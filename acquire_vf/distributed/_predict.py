"""``acquire-vf predict --profile P DATASET --out OUT.ome.zarr``: a saved run's virtual
channels made afterwards, in this process or on Dask distributed, with the live run's checks.

The client reads nothing but the input's index; each task (one frame set) reads its planes
where the worker runs and returns the virtual frames and their QC; the client writes them, in
one OME-Zarr store beside the input's physical channels, each virtual channel marked as a live
run marks it, and ``predict.json`` with the throughput per worker and the failures.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from acquire_vf._errors import DataError
from acquire_vf._frames import Frame, FrameId, raised_flags
from acquire_vf.config import Profile
from acquire_vf.distributed._cluster import local_workers, open_client
from acquire_vf.distributed._source import DatasetSource, open_source
from acquire_vf.distributed._work import (
    SetKey,
    SetResult,
    failed_set,
    run_set,
    run_sets,
    worker_for,
)

RETRIES = 2
"""Tries after the first for a task whose worker died (the scheduler reruns it elsewhere)."""


def _outputs(profile: Profile, backend: str | None) -> list[Any]:
    return worker_for(profile, backend).outputs


def for_workers(profile: Profile, cluster: str) -> Profile:
    """``profile`` with its engines' CPU threads set to the cores each local worker has, all
    but one shared out (the spare one is the client's, which reads and writes the frames, as
    the live run keeps one for acquisition), so N workers do not run N x all-cores threads;
    elsewhere the profile's own setting."""
    import os

    if not cluster.startswith("local"):
        return profile
    per = max(((os.cpu_count() or 1) - 1) // local_workers(cluster), 1)
    return profile.model_copy(update={"compute": profile.compute.model_copy(
        update={"threads": per})})


def with_uncertainty(profile: Profile, passes: int | None) -> Profile:
    """``profile`` with ``passes`` uncertainty passes per virtual frame (0: none; ``None``:
    the profile's ``[verification] uncertainty_passes``)."""
    if passes is None:
        return profile
    from acquire_vf.config import Verification

    ver = profile.verification or Verification()
    return profile.model_copy(update={"verification": Verification.model_validate(
        {**ver.model_dump(), "uncertainty_passes": passes})})


def predict_dataset(profile: Profile, source: Path, out: Path, *, cluster: str = "none",
                    backend: str | None = None, adapt: tuple[int, int] = (1, 4),
                    uncertainty: int | None = None, chunk: int = 1,
                    on_start: Callable[[int, str | None], None] | None = None,
                    on_set: Callable[[SetResult], None] | None = None) -> dict[str, Any]:
    """Every frame set of the saved run at ``source`` through ``profile``'s refocus and
    synthesis stages; the virtual channels written to ``out`` (OME-Zarr); ``uncertainty``
    passes per virtual frame if given (else the profile's); ``chunk`` frame sets per task on a
    cluster (fewer scheduler round trips; a retried task redoes its chunk). ``on_start(n,
    dashboard)`` and ``on_set(result)`` report progress. Returns ``predict.json``'s content."""
    from acquire_vf.storage import DatasetLayout

    src = open_source(source)
    needed = sorted({c for v in profile.virtual_channels for c in v.inputs})
    missing = [c for c in needed if c not in src.channels]
    if missing:
        raise DataError(f"'{source}': profile '{profile.name}' needs physical channel(s) "
                        f"{missing} for its virtual channels; the dataset has {src.channels}")
    keys = src.keys()
    profile = for_workers(with_uncertainty(profile, uncertainty), cluster)
    t0 = time.perf_counter()
    with open_client(cluster, adapt) as client:
        dashboard = getattr(client, "dashboard_link", None) if client is not None else None
        if client is None:
            outputs = worker_for(profile, backend).outputs
        else:
            from acquire_vf.distributed._plugin import EnginesPlugin

            client.register_plugin(EnginesPlugin(profile, backend))
            outputs = client.submit(_outputs, profile, backend, pure=False).result()
        physical = [c for c in src.layout.channels if c.role == "physical"]
        layout = DatasetLayout(
            channels=(*physical, *outputs), shape=src.layout.shape, dtype=src.layout.dtype,
            positions=src.layout.positions, z_offsets_um=src.layout.z_offsets_um,
            pixel_size_um=src.layout.pixel_size_um, bit_depth=src.layout.bit_depth,
            profile=profile.name, extra={"predicted_from": str(source), "cluster": cluster,
                                         **({"plate": src.layout.extra["plate"]}
                                            if "plate" in src.layout.extra else {})})
        writer, have = _open_output(out, layout)
        todo = [k for k in keys if not _done(have, k, layout)]
        if on_start is not None:
            on_start(len(todo), dashboard)
        report = _Tally(outputs)
        report.resumed = len(keys) - len(todo)
        try:
            for res in _results(client, profile, backend, str(source), todo, chunk):
                _write(writer, src, res, have)
                report.add(res)
                if on_set is not None:
                    on_set(res)
        finally:
            writer.close()
    summary = report.summary(time.perf_counter() - t0)
    summary.update({"input": str(source), "output": str(out), "cluster": cluster,
                    "dashboard": dashboard, "profile": profile.name,
                    "engine_threads_per_worker": profile.compute.threads})
    sidecar = out.with_name(sidecar_name(out))
    sidecar.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def sidecar_name(out: Path) -> str:
    """``predict.json``'s name beside the store ``out`` (OUT.ome.zarr -> OUT.predict.json)."""
    return out.name.removesuffix(".zarr").removesuffix(".ome") + ".predict.json"


def _results(client: Any, profile: Profile, backend: str | None, path: str,
             keys: list[SetKey], chunk: int = 1) -> Iterator[SetResult]:
    """Each frame set's result as it is done (a failed task: a result per set saying why);
    ``chunk`` sets per cluster task."""
    if client is None:
        for key in keys:
            yield _guarded(functools.partial(run_set, profile, backend, path, key), key)
        return
    from distributed import as_completed

    pf, bf = client.scatter(profile, broadcast=True), backend
    groups = [keys[i:i + max(chunk, 1)] for i in range(0, len(keys), max(chunk, 1))]
    futures = {client.submit(run_sets, pf, bf, path, group, pure=False, retries=RETRIES):
               group for group in groups}
    for fut in as_completed(futures):
        group = futures.pop(fut)
        try:
            results = fut.result()
        except Exception as e:  # noqa: BLE001 - a task that failed every try
            results = [failed_set(key, e) for key in group]
        yield from results
        fut.release()


def _guarded(get: Callable[[], SetResult], key: SetKey) -> SetResult:
    try:
        return get()
    except Exception as e:  # noqa: BLE001 - a set that failed: said, the rest go on
        return failed_set(key, e)


FAILED = "failed: "
"""How a frame set that could not be read or run is journaled (a rerun does it again)."""
Planes = dict[SetKey, dict[str, str]]
"""Per frame set, what the output has of each channel: ``frame``, or the skip's reason."""


def _open_output(out: Path, layout: Any) -> tuple[Any, Planes]:
    """The output store: new, or an earlier predict's to go on with (same channels), with
    what it already has."""
    from acquire_vf.storage import OmeZarrWriter, journal_path, journal_skips, read_journal

    if not journal_path(out).exists():
        return OmeZarrWriter(out, layout), {}
    before, records, _ = read_journal(out)
    if [c.stored_name for c in before.channels] != [c.stored_name for c in layout.channels]:
        raise DataError(f"'{out}' holds channels {[c.stored_name for c in before.channels]}, "
                        f"not this predict's {[c.stored_name for c in layout.channels]}; "
                        "expected the same profile and input to go on (or --overwrite)")
    writer = OmeZarrWriter.reopen(out)
    have: Planes = {}
    for r in records:
        have.setdefault((int(r["t"]), int(r["p"]), int(r["z"])), {})[r["channel"]] = "frame"
    for (t, p, z, c), why in journal_skips(out).items():
        have.setdefault((t, p, z), {}).setdefault(c, why)
    return writer, have


def _done(have: Planes, key: SetKey, layout: Any) -> bool:
    """Every channel of frame set ``key`` is in the output (a frame, or a reason it is not
    made that is not a failure)."""
    got = have.get(key, {})
    return all(c.name in got and not got[c.name].startswith(FAILED) for c in layout.channels)


def _write(writer: Any, src: DatasetSource, res: SetResult, have: Planes) -> None:
    t, p, z = res.key
    got = have.get(res.key, {})
    if "*" in res.not_made:  # the set could not be read or run at all: a rerun tries again
        for c in writer.layout.channels:
            writer.skip(FrameId(t, p, z, c.name), c.role, FAILED + res.not_made["*"])
        return
    for c, (px, z_um) in src.frame_set(res.key).items():
        if got.get(c) != "frame":  # a set half written before a stop: only what is missing
            writer.append(Frame(FrameId(t, p, z, c), px, seq=0, elapsed_ms=0.0, z_um=z_um))
    for name, (px, qc) in sorted(res.frames.items()):
        if got.get(name) != "frame":
            writer.append(Frame(FrameId(t, p, z, name), px, seq=0, elapsed_ms=0.0,
                                role="virtual", qc=qc))
    for name, why in res.not_made.items():
        writer.skip(FrameId(t, p, z, name), "virtual", why)


class _Tally:
    """What the summary table and ``predict.json`` say: per virtual channel, frames made, not
    made (by reason) and QC flags raised; per worker, frame sets and seconds."""

    def __init__(self, outputs: list[Any]) -> None:
        self.made: Counter[str] = Counter()
        self.flags: dict[str, Counter[str]] = {c.name: Counter() for c in outputs}
        self.not_made: dict[str, Counter[str]] = {c.name: Counter() for c in outputs}
        self.workers: dict[str, dict[str, float]] = {}
        self.failures: list[str] = []
        self.sets = 0
        self.resumed = 0
        """Frame sets an earlier predict into the same output had done."""

    def add(self, res: SetResult) -> None:
        self.sets += 1
        w = self.workers.setdefault(res.worker or "(failed)", {"sets": 0, "seconds": 0.0})
        w["sets"] += 1
        w["seconds"] = round(w["seconds"] + res.seconds, 3)
        if "*" in res.not_made:
            t, p, z = res.key
            self.failures.append(f"t={t} p={p} z={z}: {res.not_made['*']}")
        for name, (_, qc) in res.frames.items():
            self.made[name] += 1
            self.flags[name].update(f.value for f in raised_flags(qc))
        for name, why in res.not_made.items():
            if name in self.not_made:
                self.not_made[name][why.split(":")[0]] += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        frames = sum(self.made.values())
        return {"frame_sets": self.sets, "frame_sets_done_before": self.resumed,
                "seconds": round(seconds, 2),
                "virtual_frames": frames,
                "virtual_frames_per_s": round(frames / seconds, 3) if seconds else None,
                "channels": {c: {"made": self.made[c], "qc_flags": dict(self.flags[c]),
                                 "not_made": dict(self.not_made[c])} for c in self.flags},
                "workers": self.workers, "failures": self.failures}
