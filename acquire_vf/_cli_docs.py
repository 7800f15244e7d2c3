"""The README's command table, generated from the CLI itself (tests/test_docs.py checks that
the README holds exactly this): each command's synopsis from its arguments and options, and
what it does from its own help."""

from __future__ import annotations

import enum
from typing import Any

ORDER = ("demo", "live", "replay", "profile validate", "profile copy", "recover", "view",
         "simulate", "calibrate", "train", "export", "export-bioimageio", "quantize",
         "predict", "build-engine", "bench", "evaluate")
"""The order people meet the commands in; commands not listed follow, alphabetically."""


def _synopsis(name: str, cmd: Any) -> str:
    parts = [f"acquire-vf {name}"]
    for p in cmd.params:  # typer's own click: told apart by duck typing, not by class
        kind = getattr(p, "param_type_name", "")
        if kind == "argument":
            meta = (p.name or "").upper()
            parts.append(f"{meta} [{meta} ...]" if p.nargs == -1 else meta)
            continue
        if kind != "option" or getattr(p, "hidden", False) or p.name == "help":
            continue
        flag = max(p.opts, key=len)
        if getattr(p, "is_flag", False):
            text = flag
        else:
            kind_of = getattr(getattr(p, "type_descriptor", None), "annotation", None)
            meta = "/".join(str(e.value) for e in kind_of) if isinstance(kind_of, type) and \
                issubclass(kind_of, enum.Enum) else (p.name or "").upper()
            if p.nargs > 1:
                meta = " ".join([meta] * p.nargs)
            text = f"{flag} {meta}"
        parts.append(text if p.required else f"[{text}]")
    return " ".join(parts)


def _does(cmd: Any) -> str:
    text = (cmd.help or "").split("\n\n")[0]
    return " ".join(text.split()).replace("|", "\\|")


def commands() -> list[tuple[str, Any]]:
    """(name, click command) for every command, groups' subcommands as ``group sub``."""
    import typer

    from acquire_vf._cli import app

    root: Any = typer.main.get_command(app)
    ctx = root.make_context("acquire-vf", [], resilient_parsing=True)
    out: list[tuple[str, Any]] = []
    for name in root.list_commands(ctx):
        c = root.get_command(ctx, name)
        if hasattr(c, "list_commands"):  # a group: its subcommands
            out += [(f"{name} {s}", c.get_command(ctx, s)) for s in c.list_commands(ctx)]
        else:
            out.append((name, c))
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(out, key=lambda nc: (rank.get(nc[0], len(ORDER)), nc[0]))


def command_table() -> str:
    rows = ["| command | does |", "|---|---|"]
    for name, cmd in commands():
        rows.append(f"| `{_synopsis(name, cmd)}` | {_does(cmd)} |")
    return "\n".join(rows)
