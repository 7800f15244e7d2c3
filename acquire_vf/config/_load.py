"""Load a profile from TOML and turn validation failures into one readable line.

Pydantic's own messages are multi-line and name internal types; a microscopist editing a TOML
file needs the file, the dotted key, what was expected and, for typos, the nearest valid name.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from acquire_vf._errors import ProfileError
from acquire_vf._paths import shipped, user_profiles
from acquire_vf.config._autofocus import VARIANTS, AutofocusClosedLoop, Refocusing
from acquire_vf.config._profile import Profile

PROFILES_DIR = shipped("hardware_profiles")
"""The shipped profiles: the checkout's ``hardware_profiles/``, or the wheel's copy."""


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile path, or a bare name: the user's own profile of that name
    (:func:`acquire_vf._paths.user_profiles`), else the shipped one (``demo``)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    name = f"{p.stem if p.suffix == '.toml' else p.name}.toml"
    for folder in (user_profiles(), PROFILES_DIR):  # the user's own first
        if p.parent == Path(".") and (folder / name).exists():
            return folder / name
    known = sorted({x.stem for d in (user_profiles(), PROFILES_DIR) if d.is_dir()
                    for x in d.glob("*.toml")})
    hint = f"; profiles by name: {', '.join(known)}" if known else ""
    raise ProfileError(f"profile '{name_or_path}' not found (expected a .toml file path{hint})")


def load_profile(path: str | Path) -> Profile:
    """Read, validate and return the profile at ``path`` (or a shipped profile's name).

    Relative engine paths in the file are resolved against the file's folder, so a profile
    means the same thing whichever folder the user runs from.
    """
    p = resolve_profile_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{p}: cannot read profile ({e})") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{p}: not valid TOML: {e}") from e
    return profile_from_dict(data, source=str(p), base_dir=p.parent)


def profile_from_dict(data: Mapping[str, Any], source: str = "<profile>",
                      base_dir: Path | None = None) -> Profile:
    """Validate a parsed profile; ``source`` names it in error messages."""
    try:
        prof = Profile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(f"{source}: {format_validation_error(e, Profile)}") from e
    return _resolve_paths(prof, base_dir) if base_dir is not None else prof


def _resolve_paths(prof: Profile, base: Path) -> Profile:
    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        from acquire_vf.card import engine_path  # a bioimage.io package names its ONNX

        return engine_path(p if p.is_absolute() else (base / p).resolve())

    virtual = tuple(v.model_copy(update={"engine": fix(v.engine)}) for v in prof.virtual_channels)
    af = prof.autofocus
    update: dict[str, Any] = {}
    if isinstance(af, Refocusing):
        update = {"engine": fix(af.engine),
                  "engines": {c: fix(p) for c, p in af.engines.items()}}
    if isinstance(af, AutofocusClosedLoop):
        update["estimators"] = {c: fix(p) for c, p in af.estimators.items()}
    return prof.model_copy(update={"virtual_channels": virtual,
                                   "autofocus": af.model_copy(update=update)})


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line for all problems: ``key: what was expected, got what``; typos get a suggestion."""
    parts = []
    items = err.errors()
    locs = [tuple(i["loc"]) for i in items]
    for item in items:
        loc = tuple(item["loc"])
        if any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs):
            continue  # a follow-on complaint about a parent whose child already failed
        key = ".".join(str(x) for x in loc) or "(top level)"
        if item["type"] == "union_tag_invalid":
            ctx = item.get("ctx", {})
            parts.append(f"'{key}.{ctx.get('discriminator', 'kind').strip(chr(39))}' is "
                         f"{ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}")
        elif item["type"] == "extra_forbidden":
            valid = _field_names_at(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"
            parts.append(f"unknown key '{key}'{hint}")
        elif item["type"] == "missing":
            parts.append(f"missing required key '{key}'")
        elif item["type"] == "value_error":
            msg = str(item["msg"]).removeprefix("Value error, ")
            parts.append(f"{key}: {msg}" if loc else msg)
        else:
            got = item.get("input")
            parts.append(f"'{key}' {_expected(item['msg'])}, got {got!r}")
    return "; ".join(parts)


def _expected(msg: str) -> str:
    msg = msg[0].lower() + msg[1:] if msg else msg
    return "expected " + msg.removeprefix("input should be ").removeprefix("value should be ")


def _field_names_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by following ``loc`` down from ``model``.

    Tagged unions appear in ``loc`` as the tag value (``connection.attach.port``), so a union
    position is kept as a mapping from tag to member until the tag is read.
    """
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, dict):
            if part not in current:
                break
            current = current[part]
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            break
        models = _models_in(fields[part].annotation)
        if not models:
            break
        tags = {_kind_tag(m): m for m in models}
        current = tags if len(models) > 1 and None not in tags else models[0]
    if isinstance(current, dict):
        return sorted({f for m in current.values() for f in m.model_fields})
    return sorted(getattr(current, "model_fields", {}))


def _kind_tag(model: type[BaseModel]) -> Any:
    """The tag of a tagged union's member: its ``kind`` (connection) or ``policy``
    (autofocus) literal."""
    field = model.model_fields.get("kind") or model.model_fields.get("policy")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if args else None


def _models_in(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in typing.get_args(ann) for m in _models_in(arg)]


def merged(base: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``updates`` merged in: nested tables merge, other values replace."""
    out = copy.deepcopy(dict(base))
    for k, v in updates.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def demo_variant(updates: Mapping[str, Any], source: str = "demo variant") -> Profile:
    """The shipped demo profile (engines, verification, closed-loop focus) on the in-memory
    backend at 256 x 256 without focus drift or steps, with ``updates`` merged in
    (``connection`` replaces the whole table): what tests and the figure scripts run."""
    base = load_profile("demo").model_dump(mode="json", exclude_none=True)
    policy = (updates.get("autofocus") or {}).get("policy")
    if policy is not None and policy != base["autofocus"]["policy"]:
        # another policy takes other settings: keep only the demo's that it takes
        keep = VARIANTS[policy].model_fields
        base["autofocus"] = {k: v for k, v in base["autofocus"].items() if k in keep}
    base["connection"] = {"kind": "memory", "shape": [256, 256]}
    base["specimen"]["focus_drift_um"] = 0.0
    base["specimen"]["focus_steps"] = []
    if "connection" in updates:
        base.pop("connection")
    return profile_from_dict(merged(base, updates), source=source)
