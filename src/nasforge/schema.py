"""Config machinery shared by every config model: strict pydantic models, one-line validation errors, YAML files
and ``--set key.sub=value`` overrides.

Every config of nasforge (a search, a supernet run, an evaluator's block, a method's own settings) is a
:class:`ConfigModel`: a pydantic model with :data:`STRICT` settings (unknown fields are rejected, instances are
frozen, numbers are finite) whose scalars are taken at their word (``true`` is not the number 1, ``1`` is not
``true``). :data:`RunName` is the type of a run's ``name`` (a slug: it becomes part of a folder name).
:func:`validated` builds a config from a mapping plus overrides and turns pydantic's error into ONE line naming the
field, the value and what is allowed, e.g. ``executor.kind: got 'gpu'; allowed: 'local', 'pool' or 'ray'``.
"""
from __future__ import annotations

import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Mapping, Sequence, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from .errors import DataError, InvalidValue, NasforgeError, ParseError

__all__ = ["STRICT", "ConfigModel", "RunName", "scalar_mismatch", "check_run_name", "validated", "validation_error",
           "apply_overrides", "read_yaml", "dump_config", "deep_copy", "parse_scalar"]

ModelT = TypeVar("ModelT", bound=BaseModel)

#: settings of every config model: unknown fields are errors, values are frozen, numbers given for text fields
#: become text, float fields hold finite numbers (no nan / inf)
STRICT = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False)

#: a run name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit (plus: no ``..``)
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _kinds(annotation: Any) -> list[Any]:
    """The alternatives of a field annotation (``int | None`` -> ``[int, NoneType]``; ``Annotated`` unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [k for arg in get_args(annotation) for k in _kinds(arg)]
    return [annotation]


def scalar_mismatch(annotation: Any, value: Any) -> str | None:
    """What is allowed when ``value`` is a boolean where ``annotation`` means a number, or a number where it means a
    boolean (pydantic's lax mode would read ``true`` as 1 and ``1`` as true); ``None`` when there is no such
    mismatch. Items of tuple / list fields are checked too (``input_shape: [true, 28, 28]``)."""
    kinds = _kinds(annotation)
    if Any in kinds:
        return None
    if isinstance(value, bool):
        if bool not in kinds and int in kinds:
            return "an integer, not true/false"
        if bool not in kinds and float in kinds:
            return "a number, not true/false"
        return None
    if isinstance(value, (int, float)):
        if bool in kinds and not {int, float, str} & set(kinds):
            return "true or false"
        return None
    if isinstance(value, (list, tuple)):
        for kind in kinds:
            if get_origin(kind) not in (tuple, list):
                continue
            args = get_args(kind)
            items = [args[0]] * len(value) if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else args
            for item, ann in zip(value, items):
                problem = scalar_mismatch(ann, item)
                if problem:
                    return f"items that are each {problem}"
    return None


class ConfigModel(BaseModel):
    """Base of every config model: :data:`STRICT` settings, and no boolean where a number is meant (``budget:
    true``) nor a number where a boolean is (``progress: 1``), in every field of every subclass."""

    model_config = STRICT

    @field_validator("*", mode="before")
    @classmethod
    def _scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        problem = scalar_mismatch(field.annotation, value) if field is not None else None
        if problem:
            raise ValueError(problem)
        return value


def check_run_name(name: str) -> str:
    """``name`` when it is a safe run name (a slug that cannot leave ``runs/``), else a ``ValueError``."""
    if not _RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError("a run name of at most 100 letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit, without '..' (choose any folder with --out)")
    return name


#: the type of a run's ``name`` field (it becomes the folder ``runs/<name>-<time>``)
RunName = Annotated[str, AfterValidator(check_run_name)]


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the (sub-)model that the raw pydantic ``loc`` points into, for 'extra field' errors."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            continue
        ann = field.annotation
        subs = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = subs[0] if subs else None
    return sorted(getattr(current, "model_fields", {}))


def validation_error(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> NasforgeError:
    """The first error of a pydantic ``ValidationError`` as one :class:`InvalidValue` line naming the field
    (``prefix`` is put before the field's dotted path, e.g. ``"evaluator."`` for a nested block)."""
    err = exc.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, NasforgeError):
        if prefix and isinstance(original, InvalidValue) and not original.field.startswith(prefix):
            return InvalidValue(prefix + original.field, original.value, original.allowed)
        return original
    raw_loc = list(err.get("loc", ()))
    field = prefix + (".".join(str(p) for p in raw_loc) or "config")
    msg = str(err.get("msg", "a valid value"))
    if err["type"] == "extra_forbidden":
        return InvalidValue(field, err.get("input"), "no such field; fields here: " + ", ".join(_fields_at(root, raw_loc)))
    if err["type"] == "missing":
        return InvalidValue(field, "<missing>", "a value (this field is required)")
    for head in ("Input should be ", "Value error, "):
        if msg.startswith(head):
            msg = msg[len(head):]
    return InvalidValue(field, err.get("input"), msg)


def parse_scalar(text: str) -> Any:
    """A ``--set`` value as YAML; plain numbers YAML 1.1 leaves as strings (``1e8``, ``1.0e-3``) become floats."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def deep_copy(value: Any) -> Any:
    """A copy of nested mappings and lists (leaves shared)."""
    if isinstance(value, Mapping):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str],
                    shorthands: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``3``, ``0.5``, ``true``, ``[1, 2]``, ``null``).

    ``shorthands`` (``{"space": "name"}``) expand a plain string at a top-level key into ``{name: value}``, before
    and after each override, so ``--set space.kwargs.C=8`` works on ``space: nb201``.
    """
    def expand(d: dict[str, Any]) -> dict[str, Any]:
        for key, sub in (shorthands or {}).items():
            if isinstance(d.get(key), str):
                d[key] = {sub: d[key]}
        return d

    out = expand(deep_copy(dict(raw)))
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise InvalidValue("--set", item, "KEY=VALUE with a dotted key, e.g. strategy.params.sample_size=5")
        node: dict[str, Any] = out
        for depth, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise InvalidValue(f"--set {key}", ".".join(parts[: depth + 1]) + f" = {nxt!r}",
                                   "a key inside a mapping (this one holds a plain value)")
            node = nxt
        node[parts[-1]] = parse_scalar(value)
        if len(parts) == 1:
            out = expand(out)
    return out


def validated(model: type[ModelT], raw: Mapping[str, Any], overrides: Sequence[str] = (),
              shorthands: Mapping[str, str] | None = None) -> ModelT:
    """``model`` (a pydantic config class) from a mapping plus ``--set`` overrides, with one-line errors."""
    if not isinstance(raw, Mapping):
        raise InvalidValue("config", type(raw).__name__, "a mapping of config fields (YAML key: value pairs)")
    data = apply_overrides(raw, overrides, shorthands)
    try:
        return model(**data)
    except ValidationError as exc:
        raise validation_error(exc, root=model) from None
    except TypeError as exc:  # non-string keys
        raise InvalidValue("config", str(exc), "string keys") from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML file of a config (``{}`` when empty); a missing file or bad YAML is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"config: file {str(p)!r} does not exist; allowed: a YAML file (see configs/)")
    text = p.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ParseError(f"config {p.name}{where}", " ".join(text.split())[:80], "valid YAML") from None
    return raw if raw is not None else {}


def dump_config(config: BaseModel | Mapping[str, Any]) -> str:
    """YAML text of a config (JSON-compatible values, fields in declaration order)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
