"""The one error of the file contracts, and the walker that checks data against a ``TypedDict``.

:func:`check` reads the shape from the annotations themselves (``typing.get_type_hints``), so a
``TypedDict`` in :mod:`common.contracts.shapes` is at once the documentation of a block, the type the
readers' code may be checked against, and the validator: there is no second description to drift.

What the walker understands (all a JSON file can hold):

- a ``TypedDict``: a ``dict`` with every key of ``__required_keys__``; keys it does not name are
  allowed (a writer may add a key without a new version; removing or renaming one needs a new version);
- ``dict[str, X]``, ``list[X]`` (a tuple passes too: ``json`` writes it as a list), ``X | None``;
- ``float`` (any real number but a bool: ints and NumPy scalars pass, and NaN, which ``mean_sem``
  writes for a statistic over no run), ``int`` (an integral number, not a bool), ``bool``, ``str``
  (an ``os.PathLike`` passes too: ``common.atomic.write_json`` writes it as a string), ``Any``.
"""
import json
import numbers
import os
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Union

from ..atomic import write_json

try:
    from typing import NotRequired  # noqa: F401  (Python >= 3.11: typing strips it from the hints)
    _type_hints = typing.get_type_hints
except ImportError:  # Python 3.10: the shapes are typing_extensions TypedDicts
    from typing_extensions import get_type_hints as _type_hints


class ContractError(ValueError):
    """A file between two stages does not hold what its contract says (docs/properties.md, md_gpu/md_stage.py).

    Typical causes: the file was written by an older version of the product (another ``format``
    version) or is another file altogether (another ``format`` name, or none); it was cut short by a
    full disk or a copy that did not finish (not valid JSON); a hand-edited or foreign file lacks a key
    or holds a value of another type. The message names the file, the key path and the stage to rerun.
    """


def check(value, shape, where: str) -> None:
    """Raise :class:`ContractError` with the key path ``where`` when ``value`` does not have ``shape``."""
    if shape is Any:
        return
    if isinstance(shape, type) and issubclass(shape, dict) and hasattr(shape, "__required_keys__"):  # TypedDict
        _expect(isinstance(value, dict), value, "an object {...}", where)
        hints, required = _fields(shape)
        for key in required:
            if key not in value:
                raise ContractError(f"key '{_join(where, key)}' is missing")
        for key, field in hints.items():
            if key in value:
                check(value[key], field, _join(where, key))
        return
    origin, args = typing.get_origin(shape), typing.get_args(shape)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        (inner,) = [a for a in args if a is not type(None)]  # the contracts use only `X | None`
        check(value, inner, where)
    elif origin is dict:
        _expect(isinstance(value, dict), value, "an object {name: ...}", where)
        for key, item in value.items():
            check(item, args[1], _join(where, key))
    elif origin is list:
        _expect(isinstance(value, (list, tuple)), value, "a list [...]", where)
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]")
    elif shape is float:
        _expect(isinstance(value, numbers.Real) and not isinstance(value, bool), value, "a number", where)
    elif shape is int:
        _expect(isinstance(value, numbers.Integral) and not isinstance(value, bool), value, "an integer", where)
    elif shape is bool:
        _expect(isinstance(value, bool), value, "true or false", where)
    elif shape is str:
        _expect(isinstance(value, (str, os.PathLike)), value, "a string", where)
    else:
        raise TypeError(f"common.contracts.check: no rule for the annotation {shape!r} at {where}")


@cache
def _fields(shape) -> tuple[dict, frozenset]:
    """A TypedDict's field annotations (``NotRequired`` stripped) and its required keys."""
    return _type_hints(shape), shape.__required_keys__


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _expect(ok: bool, value, what: str, where: str) -> None:
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ContractError(f"key '{where or '(top level)'}' must be {what}, got {shown} ({type(value).__name__})")


class Contract:
    """One file between stages: its ``format`` tag ``<name>/<version>``, its top-level shape, the
    stage that writes it (named in every error, with the command that rewrites the file)."""

    def __init__(self, name: str, version: int, shape, *, stage: str, what: str):
        self.name, self.version, self.shape, self.stage, self.what = name, version, shape, stage, what

    @property
    def format(self) -> str:
        """The ``format`` value the file carries, e.g. ``md_gpu-summary/1``."""
        return f"{self.name}/{self.version}"

    def _fix(self) -> str:
        return (f"rerun the {self.stage} stage that writes it with --force "
                f"(`multiscale run CASE --stages {self.stage} --force`)")

    def validate(self, data, *, source: str = "") -> None:
        """Check ``data`` (the parsed file); :class:`ContractError` naming ``source``, the key and the fix."""
        self._validate(data, f"{source}: " if source else "", self._fix())

    def _validate(self, data, prefix: str, fix: str) -> None:
        try:
            self._check_format(data)
            check(data, self.shape, "")
        except ContractError as exc:
            raise ContractError(f"{prefix}{exc}; not a valid {self.what} ({self.format}): {fix}") from None

    def _check_format(self, data) -> None:
        found = data.get("format") if isinstance(data, dict) else None
        if not isinstance(found, str):
            raise ContractError(f"key 'format' is missing or not a string (got {found!r}), expected "
                                f"'{self.format}': a file of an older version of the product or another file")
        name, _, version = found.rpartition("/")
        if name != self.name:
            raise ContractError(f"key 'format' is '{found}', another kind of file than '{self.format}'")
        if version != str(self.version):
            raise ContractError(f"key 'format': found version {version} of {self.name}, expected version "
                                f"{self.version} ('{found}' instead of '{self.format}')")

    def read(self, path: str | os.PathLike) -> dict:
        """Parse and validate the file at ``path``; return it as the plain ``dict`` that ``json`` gives."""
        path = Path(path)
        if not path.is_file():
            raise ContractError(f"{path} is missing; {self._fix()}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ContractError(f"{path}: not valid JSON ({exc}), the file is truncated or corrupt; "
                                f"{self._fix()}") from None
        self.validate(data, source=str(path))
        return data

    def write(self, path: str | os.PathLike, data: dict) -> Path:
        """Validate ``data`` and write it atomically to ``path`` (indented JSON); returns the path."""
        self._validate(data, f"{path} (not written): ", f"the {self.stage} stage built data outside its contract, "
                       "a bug of that stage or of a change to common.contracts")
        return write_json(path, data)
