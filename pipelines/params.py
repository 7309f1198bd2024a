"""Job parameters: one dataclass per job kind, built from the JSON a user typed or the CLI passed.

A job's parameters travel as JSON (database row, queue message, the child's spec file); turning them
back into a typed dataclass here means a typo fails when the job is submitted, not hours into a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from obt_eval.errors import BadInputError


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except BadInputError as exc:
                errors.append(str(exc))
        raise BadInputError(f"{where}: {value!r} does not fit {annotation}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise BadInputError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, where) for v in value]
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise BadInputError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise BadInputError(f"{where}: expected an integer, got {value!r}")
        try:
            out = int(value)
        except ValueError as exc:
            raise BadInputError(f"{where}: expected an integer, got {value!r}") from exc
        if isinstance(value, float) and out != value:
            raise BadInputError(f"{where}: expected an integer, got {value!r}")
        return out
    if annotation is float:
        if isinstance(value, bool):
            raise BadInputError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"{where}: expected a number, got {value!r}") from exc
    if annotation is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadInputError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def build(cls: type, data: dict[str, Any] | None, kind: str) -> Any:
    """`cls(**data)` with unknown keys refused, required keys checked and JSON values coerced to the field types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadInputError(
            f"unknown parameters for a {kind} job: {', '.join(unknown)}",
            f"use only: {', '.join(fields)}",
        )
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], f"{kind}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadInputError(f"a {kind} job needs the parameter {name!r}", f"add \"{name}\" to the parameters")
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
