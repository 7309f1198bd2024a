"""Job parameters: one dataclass per job kind, checked when the job is submitted (and again in its process).

A job's parameters travel as JSON (database row, queue message, the child's spec file); turning them
back into a typed dataclass here means a bad value fails when the job is submitted, with a message that
names the field and what it accepts, not hours into a run with a raw traceback. pydantic does the
checking (a shadow pydantic dataclass per job dataclass, so job kinds stay plain dataclasses):

* unknown keys are refused; NaN and ±inf are refused; a required text parameter cannot be empty;
* every number is bounded: by its own ``Annotated[int, Field(ge=…, le=…)]``, else by a finite fallback;
* `Name` fields are one safe folder name (no separator, no ``..``); artifact references and data paths
  must stay inside the workspace, or inside a folder listed in ``$OBT_EVAL_DATA_ROOTS``, after symlinks
  are resolved.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationInfo

from obt_eval.errors import BadInputError
from obt_eval.workspace import MAX_NAME_LENGTH, Workspace, default_workspace, is_safe_name

ENV_DATA_ROOTS = "OBT_EVAL_DATA_ROOTS"  # extra folders (os.pathsep-separated) jobs may read recordings from
MAX_TEXT = 10_000  # characters in any text parameter (a list of systems, a question to raters)
MAX_LIST = 1_000  # items in any list parameter
# Numbers a job kind did not bound itself stay within these (finite, and far below what breaks an allocation).
FALLBACK_INT = (-1_000_000, 1_000_000)
FALLBACK_FLOAT = (-1e6, 1e6)
MAX_SEED = 2**32 - 1  # numpy's legacy seed range

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True, str_max_length=MAX_TEXT)


# --- paths: where a job may read and write --------------------------------------------------------------------


DECLARED_ROOTS_FILE = ".data-roots"  # in the workspace: folders declared by its owner on the command line


def data_roots(workspace: Workspace) -> list[Path]:
    """The folders a job may touch: the workspace, the folders listed in ``$OBT_EVAL_DATA_ROOTS``, and the
    folders the workspace's owner declared by passing them on the command line (`declare_data_root`)."""
    roots = [Path(workspace.root).resolve()]
    parts = os.environ.get(ENV_DATA_ROOTS, "").split(os.pathsep)
    declared = Path(workspace.root) / DECLARED_ROOTS_FILE
    if declared.is_file():
        parts += declared.read_text(encoding="utf-8").splitlines()
    for part in parts:
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    return roots


def declare_data_root(workspace: Workspace, folder: str | Path) -> bool:
    """Let this workspace's jobs read `folder` (True when it was outside every allowed folder until now).

    Only the command line calls this: whoever runs `obt-eval` can write the workspace anyway, so naming a
    folder there grants nothing new, while the web app (whose researchers reach the server through job
    parameters) cannot widen what jobs may read.
    """
    from obt_eval.atomic import write_text

    real = Path(folder).expanduser().resolve()
    roots = data_roots(workspace)
    if any(real == root or real.is_relative_to(root) for root in roots):
        return False
    declared = Path(workspace.root) / DECLARED_ROOTS_FILE
    lines = declared.read_text(encoding="utf-8").splitlines() if declared.is_file() else []
    write_text(declared, "\n".join([*lines, str(real)]) + "\n")
    return True


def confined(workspace: Workspace, ref: str, kind: str | None = None, *, writing: bool = False) -> list[Path]:
    """The places `ref` may mean, symlinks resolved: an absolute path, else ``workspace/<kind>/<ref>`` or a path
    inside the workspace. Raises BadInputError when one of them lies outside the allowed folders (for
    `writing`, the workspace alone: data roots hold recordings a job reads, never what it writes)."""
    path = Path(str(ref)).expanduser()
    if "\0" in str(ref):
        raise BadInputError(f"{ref!r} is not a path")
    if path.is_absolute():
        candidates = [path]
    else:
        # a bare name in a form means workspace/<kind>/<name> first
        candidates = ([workspace.root / kind / path] if kind else []) + [workspace.root / path]
    roots = data_roots(workspace)[:1] if writing else data_roots(workspace)
    if writing and any(part.startswith(".") for part in path.parts if part not in (".", "/")):
        # hidden workspace internals (.secrets, .data-roots, work folders) are never a job's output
        raise BadInputError(f"{ref} names a hidden folder or file", "give a path without parts that start with '.'")
    out = []
    for candidate in candidates:
        real = candidate.resolve()
        if not any(real == root or real.is_relative_to(root) for root in roots):
            raise BadInputError(
                f"{ref} is outside the workspace ({workspace.root})" + (f" (it leads to {real})" if real != candidate
                                                                         else ""),
                f"give a name or a path inside the workspace, or add the folder to ${ENV_DATA_ROOTS} "
                f"(folders separated by '{os.pathsep}') on the app and the workers",
            )
        out.append(real)
    return out


class _Problem(ValueError):
    """A validator's finding, worded for users, with what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    @classmethod
    def of(cls, exc: BadInputError) -> _Problem:
        return cls(str(exc.args[0]).split("\n  what to do:")[0], exc.hint)


def _workspace(info: ValidationInfo) -> Workspace:
    context = info.context or {}
    return context.get("workspace") or Workspace.at(default_workspace())


def _check_name(value: str, info: ValidationInfo) -> str:
    if not is_safe_name(value):
        raise ValueError(f"{value!r} cannot be a folder name: use letters, digits, '-', '_' or '.' "
                         f"(at most {MAX_NAME_LENGTH}), with no spaces or slashes, not starting with '.'")
    return value


def _ref(kind: str | None, writing: bool = False) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        try:
            confined(_workspace(info), value, kind, writing=writing)
        except BadInputError as exc:
            raise _Problem.of(exc) from exc
        return value  # kept as typed: the step resolves it when it runs (the artifact may not exist yet)

    return AfterValidator(check)


def parse_specs(text: str) -> list[tuple[str, str]]:
    """``"a=dir1, b=dir2"`` (or one per line) into [(a, dir1), (b, dir2)]."""
    out = []
    for part in str(text).replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise BadInputError(f"{part!r} is not NAME=DIR", "write each system as name=folder")
        name, folder = part.split("=", 1)
        out.append((name.strip(), folder.strip()))
    if not out:
        raise BadInputError("no systems given", "write systems as name=folder, name2=folder2")
    return out


def _specs(kind: str) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        try:
            specs = parse_specs(value)
            for name, folder in specs:
                if not is_safe_name(name):
                    raise BadInputError(f"{name!r} cannot be a system name (letters, digits, '-', '_', '.')")
                confined(_workspace(info), folder, kind)
        except BadInputError as exc:
            raise _Problem.of(exc) from exc
        if len(specs) > MAX_LIST:
            raise ValueError(f"at most {MAX_LIST} entries")
        return value

    return AfterValidator(check)


# Reusable parameter types: a job dataclass annotates its fields with these.
Name = Annotated[str, AfterValidator(_check_name)]  # one folder name under workspace/<kind>/
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
DataPath = Annotated[str, _ref(None)]  # a file or folder to read: in the workspace or a data root
OutPath = Annotated[str, _ref(None, writing=True)]  # a file or folder a job writes: inside the workspace
CorpusRef = Annotated[str, _ref("corpora")]  # a corpus name (or its folder)
FeaturesRef = Annotated[str, _ref("features")]  # a feature store folder (workspace-relative works)
UnitsRef = Annotated[str, _ref("units")]  # a units store name under workspace/units (or its folder)
VocoderRef = Annotated[str, _ref("vocoders")]
UnitsSpecs = Annotated[str, _specs("units")]  # "enc=units_dir, enc2=dir2"
StimuliSpecs = Annotated[str, _specs("stimuli")]  # "system=stimuli_dir, system2=dir2"


def _layers(value: str | None) -> str | None:
    """``"14"``, ``"12-18"`` or ``"6,9"``: checked here so a range like 0-10**9 never reaches a loop."""
    if value is None or not str(value).strip():
        return None
    for part in str(value).split(","):
        bounds = part.strip().split("-")
        if not 1 <= len(bounds) <= 2 or not all(b.strip().isdigit() for b in bounds):
            raise ValueError(f"{value!r} is not a layer list like 14, 12-18 or 6,9")
        lo, hi = int(bounds[0]), int(bounds[-1])
        if hi > 1000 or lo > hi:
            raise ValueError(f"{part.strip()!r} is not a range of layers (0 to 1000, low-high)")
    return str(value)


Layers = Annotated[str | None, AfterValidator(_layers)]


# --- the shadow model ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FieldInfo:
    name: str
    required: bool
    optional: bool  # None allowed
    base: Any  # int, float, str, bool, list, …: the non-None type, unwrapped
    item: Any  # a list's item type
    bounds: tuple[float | None, float | None, bool, bool] | None  # lo, hi, lo strict, hi strict; None: unbounded


def _strip(annotation: Any) -> tuple[Any, list]:
    metadata: list = []
    while typing.get_origin(annotation) is Annotated:
        annotation, *more = typing.get_args(annotation)
        metadata.extend(more)
    return annotation, metadata


def _bounds_of(metadata: list) -> tuple[float | None, float | None, bool, bool] | None:
    lo = hi = None
    lo_strict = hi_strict = False
    for m in metadata:
        for item in getattr(m, "metadata", [m]):  # a FieldInfo carries its constraints in .metadata
            if isinstance(item, annotated_types.Ge):
                lo = item.ge
            elif isinstance(item, annotated_types.Gt):
                lo, lo_strict = item.gt, True
            elif isinstance(item, annotated_types.Le):
                hi = item.le
            elif isinstance(item, annotated_types.Lt):
                hi, hi_strict = item.lt, True
    return None if lo is None and hi is None else (lo, hi, lo_strict, hi_strict)


def _describe(annotation: Any) -> tuple[bool, Any, Any, tuple | None]:
    """(None allowed, base type, list item type, bounds) of a field's annotation."""
    annotation, metadata = _strip(annotation)
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            annotation, more = _strip(args[0])
            metadata += more
    item = None
    if typing.get_origin(annotation) in (list, tuple):
        item, more = _strip((typing.get_args(annotation) or (Any,))[0])
        metadata += more
        base = list
    else:
        base = annotation
    return optional, base, item, _bounds_of(metadata)


def _numeric(t: Any) -> bool:
    return t in (int, float)


def _prepare(info: _FieldInfo) -> Any:
    """What JSON from a form or the CLI needs before pydantic sees it (strings for lists, "" for None…)."""

    def before(value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            if info.optional:
                return None
            if info.required and info.base is str:
                raise _Problem("is empty", "fill in the required parameters (the form leaves them empty); "
                                           "`obt-eval jobs kinds` lists every kind's parameters")
        if info.base is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if info.base is list and isinstance(value, list | tuple) and len(value) > MAX_LIST:
            raise ValueError(f"at most {MAX_LIST} items")
        number = info.item if info.base is list else info.base
        if _numeric(number):
            for v in value if isinstance(value, list | tuple) else [value]:
                if isinstance(v, bool):
                    raise ValueError(f"expected {_what(info)}, got {v!r}")
        return value

    return BeforeValidator(before)


def _fallback(info: _FieldInfo) -> Any:
    number = info.item if info.base is list else info.base
    lo, hi = FALLBACK_INT if number is int else FALLBACK_FLOAT

    def after(value: Any) -> Any:
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and not lo <= v <= hi:
                raise ValueError("out of range")
        return value

    return AfterValidator(after)


def _fields(cls: type) -> dict[str, _FieldInfo]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        optional, base, item, bounds = _describe(hints[f.name])
        number = item if base is list else base
        if bounds is None and _numeric(number):
            bounds = (*(FALLBACK_INT if number is int else FALLBACK_FLOAT), False, False)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = _FieldInfo(f.name, required, optional, base, item, bounds)
    return out


_ADAPTERS: dict[type, tuple[pydantic.TypeAdapter, dict[str, _FieldInfo]]] = {}


def _adapter(cls: type) -> tuple[pydantic.TypeAdapter, dict[str, _FieldInfo]]:
    if cls not in _ADAPTERS:
        hints = typing.get_type_hints(cls, include_extras=True)
        infos = _fields(cls)
        shadow_fields = []
        for f in dataclasses.fields(cls):
            info = infos[f.name]
            annotation: Any = Annotated[hints[f.name], _prepare(info)]
            number = info.item if info.base is list else info.base
            if _numeric(number) and _describe(hints[f.name])[3] is None:
                annotation = Annotated[annotation, _fallback(info)]
            spec = dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING else (
                dataclasses.field(default_factory=f.default_factory)
                if f.default_factory is not dataclasses.MISSING else dataclasses.field())
            shadow_fields.append((f.name, annotation, spec))
        shadow = dataclasses.make_dataclass(f"{cls.__name__}Check", shadow_fields)
        checked = pydantic.dataclasses.dataclass(config=_CONFIG)(shadow)
        _ADAPTERS[cls] = (pydantic.TypeAdapter(checked), infos)
    return _ADAPTERS[cls]


# --- messages ------------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _what(info: _FieldInfo) -> str:
    number = info.item if info.base is list else info.base
    if typing.get_origin(info.base) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(info.base))
    if not _numeric(number):
        return {str: "text", bool: "true or false", list: "a list"}.get(info.base, "a value")
    noun = "whole number" if number is int else "number"
    limits = ""
    if info.bounds:
        lo, hi, lo_strict, hi_strict = info.bounds
        if lo is not None and hi is not None:
            limits = f" from {_num(lo)}{' (exclusive)' if lo_strict else ''} to {_num(hi)}"
            limits += " (exclusive)" if hi_strict else ""
        elif lo is not None:
            limits = f" {'above' if lo_strict else 'of at least'} {_num(lo)}"
        elif hi is not None:
            limits = f" {'below' if hi_strict else 'of at most'} {_num(hi)}"
    noun = f"a list of {noun}s{limits}" if info.base is list else f"a {noun}{limits}"
    return noun + (", or null" if info.optional else "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(kind: str, infos: dict[str, _FieldInfo], errors: list[dict]) -> BadInputError:
    extra = ("unexpected_keyword_argument", "extra_forbidden")
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] in extra)
    if unknown:
        return BadInputError(f"unknown parameters for {_a(kind)} job: {', '.join(unknown)}",
                             f"use only: {', '.join(infos)}")
    missing = [str(e["loc"][0]) for e in errors if e["type"] in ("missing", "missing_argument")]
    if missing:
        return BadInputError(f"{_a(kind)} job needs the parameter {missing[0]!r}",
                             f"add \"{missing[0]}\" to the parameters")
    parts, hints = [], []
    for e in errors:
        name = str(e["loc"][0]) if e["loc"] else "?"
        info = infos.get(name)
        number = None if info is None else (info.item if info.base is list else info.base)
        if info is not None and _numeric(number):  # one message for every numeric problem: what it accepts
            parts.append(f"{kind}.{name} must be {_what(info)}, got {_shown(e['input'])}")
        elif e["type"] == "value_error":  # our own validators: their text is written for users
            problem = e.get("ctx", {}).get("error")
            detail = str(problem if problem is not None else e["msg"])
            if getattr(problem, "hint", None):
                hints.append(problem.hint)
            parts.append(f"{kind}.{name} {detail}" if detail.startswith("is ") else f"{kind}.{name}: {detail}")
        elif info is not None:
            parts.append(f"{kind}.{name} must be {_what(info)}, got {_shown(e['input'])}")
        else:
            parts.append(f"{kind}.{name}: {e['msg']}")
    unique = list(dict.fromkeys(parts))
    hint = "; ".join(dict.fromkeys(hints)) or "`obt-eval jobs kinds` lists every kind's parameters and defaults"
    return BadInputError("; ".join(unique[:5]) + (f" (and {len(unique) - 5} more)" if len(unique) > 5 else ""), hint)


# --- the API -------------------------------------------------------------------------------------------------


def build(cls: type, data: dict[str, Any] | None, kind: str, workspace: Workspace | None = None) -> Any:
    """`cls(**data)` checked: unknown keys refused, required keys present, values typed, bounded and confined."""
    if data is not None and not isinstance(data, dict):
        raise BadInputError(f"the parameters of {_a(kind)} job must be a JSON object, got {_shown(data)}",
                            "write them as {\"name\": value, …}")
    adapter, infos = _adapter(cls)
    context = {"workspace": workspace or Workspace.at(default_workspace())}
    try:
        checked = adapter.validate_python(dict(data or {}), context=context)
    except pydantic.ValidationError as exc:
        raise _message(kind, infos, exc.errors(include_url=False)) from None
    values = {name: getattr(checked, name) for name in infos}
    for name, value in values.items():  # belt and braces: nothing non-finite gets past, whatever the annotation
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInputError(f"{kind}.{name} must be a finite number, got {value!r}")
    return cls(**values)


def defaults(cls: type) -> dict[str, Any]:
    """The parameter template shown to users: defaults filled in, required fields as empty strings."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = ""
    return out
