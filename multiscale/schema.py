"""Validation of nested settings against a plain-data schema.

A schema is a dict ``key -> (type, default, help)`` or ``key -> nested schema``
(see docs/architecture.md). Engines declare their schemas as plain data, so they
need not import this package; this module checks a user's mapping against one:
an unknown key, a wrong type or a non-mapping section gives a :class:`CaseError`
that names the dotted key and the file, and missing keys take their defaults. A number
given with its unit (``300K``) is told to drop the unit (the key's name carries it); a
number that PyYAML leaves as text (``1e9``: YAML 1.1 wants ``1.0e+9``) is read as one.
"""
from __future__ import annotations

import copy
import difflib
import re
from typing import Any, Mapping

from .errors import CaseError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
               list: "a list", dict: "a mapping"}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


#: A number YAML 1.1 (PyYAML) reads as text: an exponent without a dot or without its sign (``1e9``, ``2.0e10``)
_YAML_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
#: A number followed by a unit (``300K``, ``3.35 A``, ``1 fs``)
_WITH_UNIT = re.compile(r"\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*([^\d\s.+-].*)")


def _coerce(value: Any, kind: type) -> Any:
    """``value``, or for a number key the float of a string PyYAML left as text (``1e9``): YAML 1.1 reads
    exponents only with a dot and a sign (``1.0e+9``), which nobody writes."""
    if kind is float and isinstance(value, str) and _YAML_EXPONENT.fullmatch(value.strip()):
        return float(value)
    return value


def _type_hint(value: Any, kind: type) -> str:
    """What to write instead, for a number given with its unit (``300K``): the key's name carries the unit."""
    if kind in (int, float) and isinstance(value, str):
        match = _WITH_UNIT.fullmatch(value)
        if match:
            return (f"; write the number alone ({match.group(1)}): the unit is part of the key's name "
                    f"and '{match.group(4).strip()}' is not read")
    return ""


def suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def validate(values: Mapping | None, schema: Mapping, *, where: str, source: str) -> dict:
    """Return ``values`` checked against ``schema`` with defaults filled in.

    ``where`` is the dotted path of this section (e.g. ``"md"``), ``source`` the
    file the values came from; both appear in every error message.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise CaseError(f"{source}: '{where}' must be a mapping of keys, got {type(values).__name__}")
    out: dict = {}
    for key in values:
        if key not in schema:
            raise CaseError(
                f"{source}: unknown key '{where}.{key}'{suggest(key, schema)}; "
                f"allowed keys: {', '.join(sorted(schema))}"
            )
    for key, spec in schema.items():
        path = f"{where}.{key}"
        if isinstance(spec, Mapping):
            out[key] = validate(values.get(key), spec, where=path, source=source)
            continue
        kind, default, help_text = spec
        if key not in values:
            out[key] = copy.deepcopy(default)
            continue
        value = _coerce(values[key], kind)
        if not _type_ok(value, kind):
            raise CaseError(
                f"{source}: '{path}' must be {_TYPE_NAMES.get(kind, kind.__name__)} ({help_text}), "
                f"got {value!r}{_type_hint(value, kind)}"
            )
        out[key] = float(value) if kind is float else copy.deepcopy(value)
    return out


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """A copy of ``base`` with ``override`` merged in, recursively for mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def changed_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two nested mappings."""
    names = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names += changed_keys(a, b, prefix=path + ".")
        elif a != b:
            names.append(path)
    return names


_MISSING = object()
