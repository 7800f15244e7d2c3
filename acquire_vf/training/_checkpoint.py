"""Loading training checkpoints without running code.

``torch.load`` with ``weights_only=False`` unpickles whatever a file holds, and unpickling can
run arbitrary code: exporting or fine-tuning from a checkpoint someone shared would execute it.
Checkpoints written by ``acquire-vf train`` hold only tensors, state dicts and plain data
(numbers, strings, lists, dicts), which PyTorch's restricted unpickler (``weights_only=True``)
reads; anything else is refused with one line.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from acquire_vf._errors import DataError


class CheckpointError(DataError):
    """A file that is not a loadable acquire-vf training checkpoint."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's contents: weights and plain data only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: expected a checkpoints/*.pt written by "
                              f"'acquire-vf train', got '{path}' (no such file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = next((ln for ln in str(e).splitlines() if "Unsupported global" in ln), None)
        if first is None:  # not a pickle at all, or a broken one
            raise CheckpointError(f"'{path}' is not an acquire-vf training checkpoint "
                                  f"(expected a checkpoints/*.pt written by 'acquire-vf "
                                  f"train'): {' '.join(str(e).split())[:160]}") from None
        raise CheckpointError(
            f"'{path}' was refused: it holds objects other than weights and plain data, and "
            f"loading them could run code ({' '.join(first.split())[:160]})") from None
    except (OSError, RuntimeError, EOFError, ValueError, TypeError) as e:
        raise CheckpointError(f"'{path}' is not an acquire-vf training checkpoint (expected a "
                              f"checkpoints/*.pt written by 'acquire-vf train'): "
                              f"{' '.join(str(e).split())[:160]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' is not an acquire-vf training checkpoint: it holds "
                              f"a {type(state).__name__}, not a dict")
    return state
