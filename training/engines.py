"""Reference engines: one factory that turns a name into an ASE calculator.

Data flow: ``case.yaml`` ``data.engine`` (a name) -> :func:`make_calculator` ->
an ASE calculator used by :mod:`training.aimd` and :mod:`training.structures`;
:func:`engine_metadata` gives the provenance (engine, method, settings,
versions) that goes into every dataset's metadata.

Engines
-------
``tblite-gfn1``, ``tblite-gfn2`` (``DEFAULT_ENGINE`` is the default)
    GFN1-/GFN2-xTB tight binding through tblite (Grimme's extended tight
    binding; Bannwarth et al., WIREs Comput. Mol. Sci. 11, e1493 (2021)).
    Gamma point only: use cells that are large enough (>= 10 A in-plane).
    This is *tight binding, not DFT*; reports must say so.
``gpaw``
    GPAW plane-wave PAW DFT (PBE by default), the density-functional option.
    Optional: only imported when asked for.
``python:module.Class``
    Any ASE calculator by import path, constructed with ``settings`` as
    keyword arguments (e.g. ``python:ase.calculators.emt.EMT``).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import platform

ENGINES = ("tblite-gfn1", "tblite-gfn2", "gpaw", "python:<module>.<Class>")
#: The engine of the embedded datasets and of ``training.structures.LATTICE``.
DEFAULT_ENGINE = "tblite-gfn2"
#: Atomic numbers (first, last) each built-in engine treats: GFN1-/GFN2-xTB are parametrised for
#: H to Rn, and GPAW's setups (gpaw-data) cover the same range. ``python:`` engines are not listed.
ELEMENTS = {"tblite-gfn1": (1, 86), "tblite-gfn2": (1, 86), "gpaw": (1, 86)}

# Defaults per engine; the user's settings override them key by key.
_TBLITE_DEFAULTS = {"accuracy": 1.0, "electronic_temperature": 300.0, "max_iterations": 250,
                    "verbosity": 0}
_GPAW_DEFAULTS = {"mode": {"name": "pw", "ecut": 350.0}, "xc": "PBE", "kpts": (1, 1, 1),
                  "occupations": {"name": "fermi-dirac", "width": 0.1}, "txt": None}


class EngineError(ValueError):
    """An unknown engine name, a missing optional package (gpaw), or a
    ``python:`` import path that does not name an ASE calculator class."""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_name(name: str) -> None:
    if name in ("tblite-gfn1", "tblite-gfn2", "gpaw") or name.startswith("python:"):
        return
    raise EngineError(f"data.engine: {name!r} is not one of {', '.join(ENGINES)}")


def engine_settings(name: str, settings: dict | None = None) -> dict:
    """The full settings (defaults merged with ``settings``) the engine ``name`` runs with."""
    _check_name(name)
    settings = dict(settings or {})
    if name.startswith("tblite"):
        return {**_TBLITE_DEFAULTS, "method": "GFN1-xTB" if name == "tblite-gfn1" else "GFN2-xTB",
                **settings}
    if name == "gpaw":
        return {**_GPAW_DEFAULTS, **settings}
    return settings


def make_calculator(name: str = DEFAULT_ENGINE, settings: dict | None = None):
    """An ASE calculator for engine ``name`` (see the module docstring).

    ``settings``: keyword arguments for the calculator, merged over the engine's defaults.
    Raises :class:`EngineError` for an unknown name or a missing optional package.
    """
    full = engine_settings(name, settings)
    if name.startswith("tblite"):
        from tblite.ase import TBLite
        return TBLite(**full)
    if name == "gpaw":
        try:
            from gpaw import GPAW
        except ImportError as err:
            raise EngineError("data.engine: 'gpaw' needs GPAW (apt-get install gpaw gpaw-data); "
                              f"import failed: {err}") from err
        return GPAW(**full)
    path = name[len("python:"):]
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise EngineError(f"data.engine: cannot import ASE calculator {path!r}: {err}") from err
    return cls(**full)


def engine_metadata(name: str, settings: dict | None = None) -> dict:
    """Provenance of engine ``name``: method, settings and package versions (JSON-able)."""
    full = engine_settings(name, settings)
    meta = {"engine": name, "settings": {k: v for k, v in full.items() if k != "txt"},
            "versions": {"ase": _version("ase"), "numpy": _version("numpy"),
                         "python": platform.python_version()}}
    if name.startswith("tblite"):
        meta["method"] = full["method"]
        meta["theory"] = "tight binding (GFN-xTB), not DFT; Gamma point only"
        meta["versions"]["tblite"] = _version("tblite")
    elif name == "gpaw":
        meta["method"] = f"DFT {full.get('xc')} (GPAW PAW)"
        meta["theory"] = "density-functional theory"
        meta["versions"]["gpaw"] = _version("gpaw")
    else:
        meta["method"] = name[len("python:"):]
        meta["theory"] = "user-supplied ASE calculator"
    return meta


def engine_label(name: str, settings: dict | None = None) -> str:
    """A short one-line label for ``atoms.info['engine']``, e.g. ``tblite 0.8.0 GFN1-xTB``."""
    meta = engine_metadata(name, settings)
    package = name.split("-")[0].split(":")[0]
    version = meta["versions"].get(package, "")
    return " ".join(p for p in (package, version, meta["method"]) if p)
