"""Several training processes: ``torchrun --standalone --nproc_per_node N -m acquire_vf.training
RECIPE [--out DIR] [--max-steps N]``.

The same training as ``acquire-vf train``, for several processes (GPUs, or CPU processes with
the gloo backend). Rank 0 writes the checkpoints and logs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from acquire_vf._errors import AcquireVFError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m acquire_vf.training")
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    from acquire_vf.config import load_recipe
    from acquire_vf.training._loop import train

    try:
        recipe, text = load_recipe(args.recipe)
        out = args.out or Path("runs") / recipe.name
        summary = train(recipe, text, out, max_steps=args.max_steps, resume=args.resume,
                        progress=sys.stderr.isatty(), recipe_path=args.recipe)
    except (AcquireVFError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
