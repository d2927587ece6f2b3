"""The structure of each system of ``case.yaml``: read it (a file or a built-in builder) and check it.

Contract: ``systems.<name>.structure`` is either the name of a builder of
:mod:`training.structures` (``BUILDERS`` or ``ALIASES``: graphene, borophene_chi3, ...) or a
structure file relative to the case folder (an absolute path is allowed) in any format ASE reads
(POSCAR/CONTCAR/.vasp, CIF, extxyz, cfg, ...). A builder name wins over a file of the same name;
of a file with several images the last is taken (as :func:`ase.io.read` gives it).
:func:`read_structure` returns the :class:`ase.Atoms`; :func:`check_sheet` and
:func:`check_species` say whether the stages can treat it; :func:`validate_system` runs all of
them on one ``case.yaml`` entry, so that a bad structure stops ``case.yaml`` validation before
any stage runs.

Every problem is one :class:`StructureError` whose message starts with the key
(``systems.<name>.structure: ...``), names the file and the problem, and says what to do.
Lengths are in Å.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.sheets import SHEET_GAP_A, is_sheet, plane_and_normal, vacuum_gap

from . import structures
from .engines import ELEMENTS

#: Two atoms closer than this (Å, periodic images included) overlap: a broken or mis-scaled file.
MIN_DISTANCE_A = 0.5
#: The vacuum (Å) along z that the error messages ask for.
ADVISED_VACUUM_A = 15.0
_SUFFIXES = ".vasp (POSCAR), .cif, .extxyz"


class StructureError(ValueError):
    """A structure the stages cannot use; the message starts with the ``case.yaml`` key."""


def builder_names() -> list[str]:
    """The built-in structure names ``case.yaml`` accepts (builders, then their aliases)."""
    return list(structures.BUILDERS) + list(structures.ALIASES)


def is_builder(spec: str) -> bool:
    """True when ``spec`` names a builder of :mod:`training.structures` (or one of its aliases)."""
    return spec in structures.BUILDERS or spec in structures.ALIASES


def structure_path(spec: str, case_dir) -> Path:
    """The file ``spec`` names: relative to ``case_dir`` unless absolute."""
    path = Path(spec)
    return path if path.is_absolute() else Path(case_dir) / path


def read_structure(spec: str, case_dir, *, key: str):
    """The :class:`ase.Atoms` of ``spec``: a builder of :mod:`training.structures`, or a file
    relative to ``case_dir`` (module docstring). Raises :class:`StructureError` for a missing,
    unreadable or empty file, a file without a periodic cell, or overlapping atoms."""
    if is_builder(spec):
        return structures.build(spec)
    path = structure_path(spec, case_dir)
    if not path.is_file():
        problem = "is a folder, not a structure file" if path.is_dir() else "does not exist"
        raise StructureError(
            f"{key}: {spec!r} is not a built-in structure ({', '.join(builder_names())}) and {path} "
            f"{problem}; give a structure file relative to the case folder {case_dir} (any format "
            f"ASE reads: POSCAR, CIF, extxyz, ...) or a built-in name")
    atoms = _read_file(path, key)
    _check_cell(atoms, path, key)
    _check_overlaps(atoms, path, key)
    return atoms


def _read_file(path: Path, key: str):
    from ase.io import read

    if path.stat().st_size == 0:
        raise StructureError(f"{key}: {path} is empty; it must hold one periodic structure")
    try:
        atoms = read(path)
    except Exception as exc:  # ASE raises many types (ValueError, RuntimeError, UnknownFileTypeError, ...)
        reason = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
        raise StructureError(
            f"{key}: ASE cannot read {path} ({type(exc).__name__}: {reason}); check the file, and give "
            f"it a suffix from which ASE recognises the format, e.g. {_SUFFIXES}") from None
    if isinstance(atoms, list):  # defensive: a reader that returns every image
        atoms = atoms[-1] if atoms else None
    if atoms is None or len(atoms) == 0:
        raise StructureError(f"{key}: {path} holds no atoms; it must hold one periodic structure")
    return atoms


def _check_cell(atoms, path: Path, key: str) -> None:
    lengths = atoms.cell.lengths()
    if not (atoms.pbc[0] and atoms.pbc[1]) or lengths.min() < 1e-6 or abs(atoms.cell.volume) < 1e-6:
        raise StructureError(
            f"{key}: {path} has no periodic unit cell (cell lengths {_lengths(lengths)} Å, periodic "
            f"along x, y, z: {_flags(atoms.pbc)}); the structure needs a periodic cell in x and y with "
            f"vacuum along z: write it with its cell, e.g. as {_SUFFIXES}")


def _check_overlaps(atoms, path: Path, key: str) -> None:
    from ase.neighborlist import neighbor_list

    first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE_A)
    if len(distance):
        k = int(np.argmin(distance))
        i, j = sorted((int(first[k]), int(second[k])))
        symbols = atoms.get_chemical_symbols()
        pair = (f"atom {i + 1} ({symbols[i]}) is {distance[k]:.3f} Å from its own periodic image" if i == j else
                f"atoms {i + 1} ({symbols[i]}) and {j + 1} ({symbols[j]}) are {distance[k]:.3f} Å apart")
        raise StructureError(
            f"{key}: {path}: {pair} (periodic images included; atoms counted from 1 as in the file), "
            f"closer than {MIN_DISTANCE_A} Å: the atoms overlap; check the positions, the cell and "
            f"their units (Å)")


def check_sheet(atoms, *, key: str, what: str, source: str = "") -> None:
    """Raise :class:`StructureError` unless ``atoms`` is a 2D sheet (:func:`common.sheets.is_sheet`:
    periodic in x and y, more than ``SHEET_GAP_A`` of vacuum along z, third cell vector along z).
    ``what``: who needs the sheet, plural (e.g. ``"the data and MD stages"``); ``source``: the file or
    builder, for the message."""
    if is_sheet(atoms):
        return
    name = source or "the structure"
    if not (atoms.pbc[0] and atoms.pbc[1]):
        found = "is not a 2D sheet: it is not periodic in x and y"
    elif atoms.pbc[2] and not plane_and_normal(atoms):
        found = "is not a 2D sheet: its third cell vector is not along z (orthogonal to the plane)"
    else:
        found = (f"is a bulk (3D periodic) structure, not a 2D sheet: its atoms leave {vacuum_gap(atoms):.1f} Å "
                 f"of vacuum along z (a sheet needs more than {SHEET_GAP_A:g} Å)")
    raise StructureError(
        f"{key}: {name} {found}; {what} support 2D sheets only: add at least {ADVISED_VACUUM_A:g} Å "
        f"of vacuum along z (third cell vector along z)")


def check_species(atoms, engine: str, *, key: str, source: str = "") -> None:
    """Raise :class:`StructureError` when ``atoms`` holds elements the reference engine ``engine``
    (``data.engine``) cannot treat (:data:`training.engines.ELEMENTS`); ``python:`` engines and
    unknown names are not checked (the data stage names an unknown engine itself)."""
    if engine not in ELEMENTS:
        return
    low, high = ELEMENTS[engine]
    bad = sorted({(int(z), s) for z, s in zip(atoms.numbers, atoms.get_chemical_symbols()) if not low <= z <= high})
    if bad:
        elements = ", ".join(f"{s} (Z = {z})" for z, s in bad)
        raise StructureError(
            f"{key}: {source or 'the structure'} holds {elements}, which the reference engine "
            f"data.engine: {engine} cannot treat (it supports Z = {low} to {high}); remove those "
            f"elements or choose another engine (data.engine: python:module.Class)")


def validate_system(name: str, entry: dict, case_dir, *, engine: str) -> None:
    """Read and check the structure of the ``case.yaml`` system ``name`` (its validated ``entry``:
    kind, structure, thickness_A, between, dataset) for the reference engine ``engine``.

    A phase's structure is read, and must be a sheet with elements the engine treats. An interface
    with ``between`` and an empty structure (or one equal to its own name that is neither a builder
    nor a file) is generated from its two phases later: nothing is checked here. Otherwise the
    interface's structure is checked like a phase's."""
    spec, key = entry.get("structure") or "", f"systems.{name}.structure"
    if entry.get("kind") == "interface" and entry.get("between") and _generated(spec, name, case_dir):
        return
    try:
        atoms = read_structure(spec, case_dir, key=key)
    except StructureError as exc:
        if spec != name:
            raise
        raise StructureError(f"{exc} (a phase without a structure key takes its system name, {name!r})") from None
    source = spec if is_builder(spec) else str(structure_path(spec, case_dir))
    check_sheet(atoms, key=key, what="the data and MD stages", source=source)
    check_species(atoms, engine, key=key, source=source)


def _generated(spec: str, name: str, case_dir) -> bool:
    """True for an interface structure that is to be generated from ``between`` (see :func:`validate_system`)."""
    return not spec or (spec == name and not is_builder(spec) and not structure_path(spec, case_dir).is_file())


def system_species(name: str, entry: dict, systems: dict, case_dir) -> tuple[list[str], str]:
    """The elements of the ``case.yaml`` system ``name`` (sorted) and where they come from, for messages:
    its structure's (the builder name or the file), or, for an interface generated from ``between``
    (:func:`validate_system`), the union of its two phases'. Raises :class:`StructureError` as
    :func:`read_structure` does."""
    spec = entry.get("structure") or ""
    if entry.get("kind") == "interface" and entry.get("between") and _generated(spec, name, case_dir):
        phases = list(entry["between"])
        symbols = set()
        for phase in phases:
            atoms = read_structure(systems[phase]["structure"], case_dir, key=f"systems.{phase}.structure")
            symbols.update(atoms.get_chemical_symbols())
        return sorted(symbols), f"the structures of its phases {' and '.join(phases)}"
    atoms = read_structure(spec, case_dir, key=f"systems.{name}.structure")
    return sorted(set(atoms.get_chemical_symbols())), spec if is_builder(spec) else str(structure_path(spec, case_dir))


def _lengths(lengths) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in lengths) + "]"


def _flags(pbc) -> str:
    return ", ".join("yes" if p else "no" for p in pbc)


def check_interface_match(name: str, entry: dict, systems: dict, case_dir, *, tolerance: float) -> None:
    """For an interface generated from its ``between`` phases: their periods along the interface must
    match within ``tolerance`` (``data.interface_tolerance``), else one error naming both phases, the
    best mismatch found and the tolerance (:func:`common.sheets.match_periods` on the phases' cells)."""
    from common.sheets import GeometryError, match_periods, rectangular_sheet

    if entry.get("kind") != "interface" or not _generated(entry.get("structure") or "", name, case_dir):
        return
    a, b = entry["between"]
    units = [rectangular_sheet(read_structure(systems[p]["structure"], case_dir, key=f"systems.{p}.structure"))
             for p in (a, b)]
    try:
        match_periods(units[0].cell[0, 0], units[1].cell[0, 0], tolerance=tolerance, names=(a, b))
    except GeometryError as exc:
        raise StructureError(f"systems.{name}.between: cannot generate the interface: {exc} "
                             f"(data.interface_tolerance)") from None
