"""MLIP ``.cfg`` datasets <-> lists of ``ase.Atoms``.

Data flow: ``read_cfg(path)`` parses the text (plain or ``.gz``) into one ``ase.Atoms`` per
``BEGIN_CFG … END_CFG`` block; ``write_cfg(path, frames)`` writes them back in MLIP's layout (the
same column widths that ``mlp calc-efs`` prints).

Conventions of the ``Atoms`` that ``read_cfg`` returns:

* positions in Å (``direct_x/y/z`` columns are converted to Cartesian), cell in Å; ``pbc`` is True
  along each lattice vector the ``Supercell`` block gives (no block: a molecule, no pbc).
* ``atoms.arrays["mlip_type"]`` [n] int: MLIP's 0-based type index, always present.
* elements: ``species[type]`` when a ``species`` list (element symbols) is given; otherwise every atom is
  the placeholder element ``X`` (atomic number 0), and the type index in ``mlip_type`` is what tells atoms
  apart.  ``MTPCalculator`` uses ``mlip_type`` when the potential has no species list.
* energy (eV), forces [n, 3] (eV/Å) and stress (ASE sign and Voigt order xx yy zz yz xz xy, eV/Å³,
  ``stress = -PlusStress / V``) are attached with a ``SinglePointCalculator`` when present in the file.
* other per-atom columns (e.g. ``nbh_grades``) go into ``atoms.arrays[name]`` as float [n].
* ``Feature key value`` lines go into ``atoms.info["features"]`` as a ``{key: value}`` dict of strings
  (exactly as written; e.g. ``float(info["features"]["MV_grade"])``).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .errors import MTPFormatError

#: Per-atom arrays that ``write_cfg`` never writes as extra AtomData columns.
_NOT_EXTRA = {"numbers", "positions", "momenta", "masses", "initial_magmoms", "initial_charges", "tags",
              "mlip_type", "forces", "energies", "stresses"}

_POS = ("cartes_x", "cartes_y", "cartes_z")
_DIRECT = ("direct_x", "direct_y", "direct_z")
_FORCE = ("fx", "fy", "fz")


def _open_text(path: Path, mode: str):
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


class _Lines:
    """Line iterator that remembers the line number, for error messages."""

    def __init__(self, path: Path, handle):
        self.path, self.handle, self.number, self.config = path, handle, 0, 0
        self.pushed: str | None = None

    def push_back(self, line: str) -> None:
        """Return ``line`` again from the next ``next()`` (the line number stays where it is)."""
        self.pushed = line

    def next(self) -> str | None:
        if self.pushed is not None:
            line, self.pushed = self.pushed, None
            return line
        line = self.handle.readline()
        if not line:
            return None
        self.number += 1
        return line.rstrip("\n")

    def error(self, what: str) -> MTPFormatError:
        return MTPFormatError(f"{self.path}: configuration {self.config}, line {self.number}: {what}")

    def numbers(self, line: str | None, count: int, what: str, kind=float) -> list:
        if line is None:
            raise self.error(f"file ends where {what} was expected")
        tokens = line.split()
        if len(tokens) != count:
            raise self.error(f"expected {count} numbers for {what}, found {len(tokens)}: {line.strip()!r}")
        try:
            return [kind(t) for t in tokens]
        except ValueError:
            raise self.error(f"{what} is not a list of {kind.__name__} numbers: {line.strip()!r}") from None


def read_cfg(path, *, species: Sequence[str] | None = None) -> list[Atoms]:
    """Read an MLIP ``.cfg`` file (plain or ``.gz``) into a list of ``ase.Atoms``.

    Parameters
    ----------
    path : str or Path
        The ``.cfg`` or ``.cfg.gz`` file.
    species : sequence of str, optional
        Element symbols of MLIP types 0, 1, …; without it every atom is the placeholder ``X``
        (see the module docstring).

    Raises
    ------
    MTPFormatError
        Naming the file, the 1-based configuration number and the line, for an unknown keyword, a wrong
        number of values, a type index outside ``species`` or a file that ends inside a configuration.
    """
    path = Path(path)
    frames: list[Atoms] = []
    lines = None
    try:
        with _open_text(path, "r") as handle:
            lines = _Lines(path, handle)
            _read_frames(lines, species, frames)
    except FileNotFoundError:
        raise MTPFormatError(f"{path}: no such .cfg file") from None
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        # a cut or foreign .gz (EOFError, BadGzipFile, zlib.error), a binary file, a folder
        where = f"{path}: configuration {lines.config}, line {lines.number}" if lines else str(path)
        raise MTPFormatError(f"{where}: cannot read the file as MLIP .cfg text ({type(exc).__name__}: {exc}); "
                             "a truncated or corrupt file? copy or write it again") from None
    return frames


def _read_frames(lines: _Lines, species, frames: list) -> None:
    """Append every configuration of ``lines`` to ``frames`` (``read_cfg``'s loop)."""
    while True:
        line = lines.next()
        if line is None:
            return
        stripped = line.strip()
        if not stripped:
            continue
        if stripped != "BEGIN_CFG":
            raise lines.error(f"expected BEGIN_CFG, found {stripped!r}")
        lines.config += 1
        frames.append(_read_one(lines, species))


def _read_one(lines: _Lines, species) -> Atoms:
    size = None
    cell_rows: list[list[float]] = []
    table = None
    columns: list[str] = []
    energy = None
    plus_stress = None
    features: dict[str, str] = {}
    while True:
        line = lines.next()
        if line is None:
            raise lines.error("file ends inside a configuration (no END_CFG)")
        stripped = line.strip()
        if not stripped:
            continue
        key = stripped.split()[0]
        if key == "END_CFG":
            break
        if key == "Size":
            size = lines.numbers(lines.next(), 1, "Size", int)[0]
            if size < 0:
                raise lines.error(f"Size must not be negative, got {size}")
        elif key == "Supercell":
            cell_rows = _read_supercell(lines)
        elif key.startswith("AtomData"):
            if size is None:
                raise lines.error("AtomData comes before Size")
            columns = stripped.split(":", 1)[1].split() if ":" in stripped else stripped.split()[1:]
            for needed in ("id", "type"):
                if needed not in columns:
                    raise lines.error(f"AtomData has no {needed!r} column: {stripped!r}")
            if not (set(_POS) <= set(columns) or set(_DIRECT) <= set(columns)):
                raise lines.error("AtomData needs cartes_x/y/z or direct_x/y/z columns")
            table = np.array([lines.numbers(lines.next(), len(columns), f"atom {k + 1} of AtomData")
                              for k in range(size)], dtype=float).reshape(size, len(columns))
        elif key == "Energy":
            energy = lines.numbers(lines.next(), 1, "Energy")[0]
        elif key.startswith("PlusStress"):
            plus_stress = np.array(lines.numbers(lines.next(), 6, "PlusStress (xx yy zz yz xz xy)"))
        elif key == "Feature":
            parts = stripped.split(None, 2)
            if len(parts) < 2:
                raise lines.error(f"Feature line without a key: {stripped!r}")
            features[parts[1]] = parts[2] if len(parts) > 2 else ""
        else:
            _unknown_key(lines, key)
    if table is None:
        raise lines.error("configuration has no AtomData block")
    return _build_atoms(lines, table, columns, cell_rows, energy, plus_stress, features, species)


def _unknown_key(lines: _Lines, key: str):
    try:
        float(key)
        hint = ("; a row of numbers where a keyword belongs: a Supercell row with a value that is not a number, "
                "or more atom rows than Size")
    except ValueError:
        hint = ""
    raise lines.error(f"unknown keyword {key!r} (known: Size, Supercell, AtomData, Energy, PlusStress, "
                      f"Feature, END_CFG){hint}")


def _read_supercell(lines: _Lines) -> list:
    """Read up to three lattice-vector rows [Å]; a non-numeric line ends the block early (a 2D or 1D cell)."""
    rows: list = []
    for _ in range(3):
        line = lines.next()
        if line is None:
            raise lines.error("file ends inside Supercell")
        tokens = line.split()
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = []
        if not values:
            lines.push_back(line)
            return rows
        if len(values) != 3:
            raise lines.error(f"a Supercell row needs 3 numbers, found {len(values)}: {line.strip()!r}")
        rows.append(values)
    return rows


def _build_atoms(lines, table, columns, cell_rows, energy, plus_stress, features, species) -> Atoms:
    col = {name: k for k, name in enumerate(columns)}
    types = table[:, col["type"]]
    if np.any(types != np.round(types)) or np.any(types < 0):
        raise lines.error("AtomData type column must hold non-negative integers")
    types = types.astype(int)
    cell = np.zeros((3, 3))
    pbc = [False, False, False]
    for k, row in enumerate(cell_rows):
        cell[k] = row
        pbc[k] = True
    if set(_POS) <= set(columns):
        positions = table[:, [col[c] for c in _POS]]
    else:
        if len(cell_rows) != 3:
            raise lines.error("direct (fractional) coordinates need a full 3-row Supercell")
        positions = table[:, [col[c] for c in _DIRECT]] @ cell
    if species is not None:
        if types.size and types.max() >= len(species):
            raise lines.error(f"type {types.max()} has no element in species={list(species)}")
        symbols = [species[t] for t in types]
    else:
        symbols = ["X"] * len(types)
    atoms = Atoms(symbols=symbols, positions=positions, cell=cell, pbc=pbc)
    atoms.arrays["mlip_type"] = types
    known = {"id", "type", *_POS, *_DIRECT, *_FORCE}
    for name in columns:
        if name not in known:
            atoms.arrays[name] = table[:, col[name]].copy()
    if features:
        atoms.info["features"] = features
    results = {}
    if energy is not None:
        results["energy"] = energy
        results["free_energy"] = energy
    if set(_FORCE) <= set(columns):
        results["forces"] = table[:, [col[c] for c in _FORCE]]
    if plus_stress is not None:
        if len(cell_rows) != 3:
            raise lines.error("PlusStress needs a full 3-row Supercell (a volume)")
        results["stress"] = -plus_stress / abs(np.linalg.det(cell))
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def frame_types(atoms: Atoms, species: Sequence[str] | None, *, where: str = "") -> np.ndarray:
    """MLIP type indices [n] of ``atoms``: from ``species`` (element symbols) when given, else from
    ``atoms.arrays["mlip_type"]``, else 0 for a one-element structure.

    Raises MTPFormatError when an element is missing from ``species`` or no rule applies.
    """
    if species is not None:
        index = {s: k for k, s in enumerate(species)}
        missing = sorted(set(atoms.get_chemical_symbols()) - set(index))
        if missing:
            raise MTPFormatError(f"{where}element(s) {missing} are not in species={list(species)}")
        return np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=int)
    if "mlip_type" in atoms.arrays:
        return np.asarray(atoms.arrays["mlip_type"], dtype=int)
    if len(set(atoms.numbers)) <= 1:
        return np.zeros(len(atoms), dtype=int)
    raise MTPFormatError(f"{where}atoms of several elements but no species list and no 'mlip_type' "
                         "array: pass species=[...] (element symbols of MLIP types 0, 1, ...)")


def write_cfg(path, frames: Iterable[Atoms], *, species: Sequence[str] | None = None) -> None:
    """Write ``frames`` as an MLIP ``.cfg`` (``.gz`` compresses), in the column layout MLIP prints.

    Types come from ``species`` (element symbols, index = MLIP type) when given, else from
    ``atoms.arrays["mlip_type"]``, else 0 for one-element frames.  Energy, forces and stress are
    written when the frame's calculator holds them (``stress`` as ``PlusStress = -stress * V``).
    Every other float per-atom array (e.g. ``nbh_grades``) becomes an extra AtomData column, and
    ``atoms.info["features"]`` becomes ``Feature`` lines.
    """
    path = Path(path)
    with _open_text(path, "w") as out:
        for number, atoms in enumerate(frames, start=1):
            out.write(_format_one(atoms, frame_types(atoms, species, where=f"{path}: frame {number}: ")))


def _result(atoms: Atoms, name: str):
    calc = atoms.calc
    if calc is None or name not in getattr(calc, "results", {}):
        return None
    return calc.results[name]


def _format_one(atoms: Atoms, types: np.ndarray) -> str:
    n = len(atoms)
    out = ["BEGIN_CFG", " Size", f"    {n}"]
    periodic = [k for k in range(3) if atoms.pbc[k]]
    if periodic:
        out.append(" Supercell")
        for k in periodic:
            a = atoms.cell[k]
            out.append(f"   {a[0]:14.6f}{a[1]:14.6f}{a[2]:14.6f}")
    forces = _result(atoms, "forces")
    extra = [name for name, arr in atoms.arrays.items()
             if name not in _NOT_EXTRA and arr.ndim == 1 and np.issubdtype(arr.dtype, np.floating)]
    header = " AtomData:  id type       cartes_x      cartes_y      cartes_z"
    if forces is not None:
        header += "           fx          fy          fz"
    header += "".join(f"{name:>17s}" for name in extra)
    out.append(header)
    pos = atoms.positions
    for k in range(n):
        row = f"{k + 1:14d}{types[k]:5d}{pos[k, 0]:15.6f}{pos[k, 1]:14.6f}{pos[k, 2]:14.6f}"
        if forces is not None:
            row += f"{forces[k, 0]:13.6f}{forces[k, 1]:12.6f}{forces[k, 2]:12.6f}"
        row += "".join(f"{atoms.arrays[name][k]:17.5f}" for name in extra)
        out.append(row)
    energy = _result(atoms, "energy")
    if energy is not None:
        out += [" Energy", f"{energy:24.12f}"]
    stress = _result(atoms, "stress")
    if stress is not None and len(periodic) == 3:
        stress = np.asarray(stress)
        if stress.shape == (3, 3):
            stress = stress.flat[[0, 4, 8, 5, 2, 1]]
        plus = -stress * atoms.get_volume()
        out.append(" PlusStress:  xx          yy          zz          yz          xz          xy")
        out.append(f"{plus[0]:16.5f}" + "".join(f"{v:12.5f}" for v in plus[1:]))
    for key, value in atoms.info.get("features", {}).items():
        out.append(f" Feature   {key}\t{value}")
    out += ["END_CFG", "", ""]
    return "\n".join(out)
