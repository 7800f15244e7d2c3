"""``acquire-vf profile validate``: everything about a profile that can be checked without the
microscope, so that ``live`` does not refuse it a second later.

- every engine file exists, its card loads and describes that exact file, and its task is the
  one the profile uses it for (synthesis, refocus, defocus);
- a virtual channel's engine takes the input channels the profile gives it, and they are
  physical channels;
- with ``here``: the compute settings can run every engine on this machine (the backend opens
  the file: an ``fp16`` profile on a machine whose only backend is ONNX Runtime on the CPU is
  refused, as ``live`` would refuse it). Without it the profile is judged, not the machine: a
  GPU rig's profile validates on a laptop;
- a headless connection's Micro-Manager folder and configuration file exist.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from acquire_vf._errors import AcquireVFError, ProfileError
from acquire_vf.config import HeadlessConnection, Profile, PyMMCorePlusConnection


def problems(prof: Profile, *, here: bool = False) -> list[str]:
    """Every problem found, one line each (empty: the profile is sound, and with ``here`` this
    machine can run it)."""
    from acquire_vf.card import ModelCard
    from acquire_vf.inference import first_runner

    out: list[str] = []
    conn = prof.connection
    if isinstance(conn, PyMMCorePlusConnection) and conn.mm_dir is not None \
            and not conn.mm_dir.is_dir():
        out.append(f"connection.mm_dir: expected the Micro-Manager installation folder, "
                   f"'{conn.mm_dir}' does not exist")
    if isinstance(conn, HeadlessConnection):
        if not conn.mm_dir.is_dir():
            out.append(f"connection.mm_dir: expected the Micro-Manager installation folder, "
                       f"'{conn.mm_dir}' does not exist")
        else:
            cfg = conn.config_file if conn.config_file.is_absolute() else \
                conn.mm_dir / conn.config_file
            if not cfg.is_file():
                out.append(f"connection.config_file: '{cfg}' does not exist")
    physical = {c.name for c in prof.channels}
    uses: list[tuple[str, Path, str, tuple[str, ...] | None]] = [
        (f"virtual channel '{v.name}'", v.engine, "synthesis", tuple(v.inputs))
        for v in prof.virtual_channels]
    uses += [(f"autofocus engine for '{c}'", p, "refocus", None)
             for c, p in prof.refocus_engines().items()]
    uses += [(f"defocus estimator for '{c}'", p, "defocus", None)
             for c, p in prof.estimator_engines().items()]
    runnable: set[Path] = set()
    for what, path, task, inputs in uses:
        if not Path(path).is_file():
            out.append(f"{what}: engine file not found: '{path}'")
            continue
        try:
            card = ModelCard.load(path)
        except AcquireVFError as e:
            out.append(f"{what}: {e}")
            continue
        if card.task != task:
            out.append(f"{what}: '{path}' is a {card.task} engine, expected {task}")
        if inputs is not None and (tuple(card.inputs) != inputs or
                                   any(i not in physical for i in card.inputs)):
            out.append(f"{what}: engine '{card.name}' expects input channels "
                       f"{list(card.inputs)}, the profile gives {list(inputs)} (physical "
                       f"channels: {sorted(physical)})")
        if not here or path in runnable:
            continue
        try:
            with _quiet_fallbacks():  # which backends were passed over: said only on failure
                first_runner(Path(path), card, prof.compute, backend=None,
                             tile=prof.tiling.tile, batch=prof.tiling.batch).close()
            runnable.add(path)
        except AcquireVFError as e:
            out.append(f"{what}: [compute] cannot run it here: {e}")
    return out


@contextlib.contextmanager
def _quiet_fallbacks() -> Iterator[None]:
    logger = logging.getLogger("acquire_vf.inference")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def validate(prof: Profile, source: str, *, here: bool = False) -> None:
    """Raise :class:`ProfileError` with every problem, one per line."""
    found = problems(prof, here=here)
    if found:
        raise ProfileError(f"{source}: {len(found)} problem(s):\n  " + "\n  ".join(found))
