"""``--cluster``: where the work runs. ``local[:N]`` starts a Dask ``LocalCluster`` of N
single-threaded worker processes; ``tcp://HOST:PORT`` joins a running scheduler;
``jobqueue:FILE`` starts a dask-jobqueue cluster (Slurm, PBS, LSF, SGE) from a YAML file the
user writes, scaled adaptively within ``--adapt MIN:MAX``; ``none`` runs in this process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acquire_vf._errors import ProfileError

JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster",
                  "sge": "SGECluster", "htcondor": "HTCondorCluster", "local": "LocalCluster"}
"""The ``kind`` a jobqueue YAML names, and its dask-jobqueue class."""


def local_workers(spec: str) -> int:
    n = spec.partition(":")[2]
    if not n:
        return max(os.cpu_count() or 1, 1)
    if not n.isdigit() or int(n) < 1:
        raise ProfileError(f"--cluster '{spec}': expected local or local:N with N >= 1 workers")
    return int(n)


@contextlib.contextmanager
def open_client(spec: str, adapt: tuple[int, int] = (1, 4)) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec`` (``None`` for ``none``), closed after; the
    cluster it started, if any, with it."""
    if spec == "none":
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ProfileError("--cluster needs Dask distributed: pip install "
                           "'acquire-vf[cluster]'") from None
    import logging

    for name in ("distributed", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)  # its comings and goings: not ours
    if spec == "local" or spec.startswith("local:"):
        # one task at a time per worker process; the engines' own threads are set to the
        # cores per worker by the caller ([compute] threads), so workers do not fight
        cluster = LocalCluster(n_workers=local_workers(spec), threads_per_worker=1,
                               processes=True, dashboard_address=":0")
        with cluster, Client(cluster) as client:
            yield client
        return
    if spec.startswith(("tcp://", "tls://", "ucx://")):
        with Client(spec) as client:
            yield client
        return
    if spec.startswith("jobqueue:"):
        with _jobqueue(Path(spec.partition(":")[2]), adapt) as cluster, \
                Client(cluster) as client:
            yield client
        return
    raise ProfileError(f"--cluster '{spec}': expected none, local[:N], tcp://HOST:PORT or "
                       "jobqueue:FILE.yaml")


@contextlib.contextmanager
def _jobqueue(path: Path, adapt: tuple[int, int]) -> Iterator[Any]:
    """A dask-jobqueue cluster from ``path``: ``kind`` (slurm, pbs, lsf, sge, htcondor) and
    the class's own keyword arguments (cores, memory, queue, walltime, ...)."""
    import yaml

    try:
        conf = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ProfileError(f"--cluster jobqueue:{path}: no such file") from None
    kind = str(conf.pop("kind", "")).lower()
    if kind not in JOBQUEUE_KINDS:
        raise ProfileError(f"{path}: expected kind one of {sorted(JOBQUEUE_KINDS)}, got "
                           f"'{kind or '(none)'}'")
    try:
        import dask_jobqueue
    except ImportError:
        raise ProfileError("--cluster jobqueue: needs dask-jobqueue: pip install "
                           "'acquire-vf[cluster]'") from None
    if kind == "local":  # dask-jobqueue's own local stand-in (tests, a workstation)
        from dask_jobqueue.local import LocalCluster as JobLocal

        cls: Any = JobLocal
    else:
        cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
    cluster = cls(**conf)
    cluster.adapt(minimum=adapt[0], maximum=adapt[1])
    with cluster:
        yield cluster
