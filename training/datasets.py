"""Read, validate and write reference datasets: lists of ASE Atoms with energy, forces, stress.

Data flow: a file (VASP OUTCAR / vasprun.xml, extended XYZ plain or ``.gz``,
MLIP ``.cfg``) -> :func:`read` -> ``list[Atoms]`` whose calculator holds the
reference ``energy`` (eV), ``forces`` [n_atoms, 3] (eV/A) and, when present,
``stress`` [6] (Voigt xx yy zz yz xz xy, eV/A^3, ASE sign: positive =
tensile; VASP's kB and its compressive-positive sign are converted by ASE's
readers) -> :func:`validate` -> fitting, subsampling, summaries ->
:func:`write` (extxyz, ``.extxyz.gz`` or ``.cfg``).

The format is chosen from the file name (:func:`format_of`). Every problem
(unreadable or truncated file, a frame without energy or forces, a cell
without volume, NaN values) raises :class:`DatasetError` naming the file and
the 0-based frame, so the message says where to look.

For VASP the reference energy is the free energy (TOTEN, ``e_fr_energy``), the
quantity whose derivatives are VASP's forces and stress.

Per-frame metadata lives in ``atoms.info``: ``system`` (str),
``temperature_K`` (float), ``strain`` ([exx, eyy]), ``engine`` (str) for
generated data (see :mod:`training.aimd`).
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.calculators.singlepoint import SinglePointCalculator

from common.atomic import atomic_path

FORMATS = ("extxyz", "vasp-out", "vasp-xml", "cfg")
PER_FRAME = ("energy", "stress")  # per-structure reference properties
PER_ATOM = ("forces",)            # per-atom reference properties


class DatasetError(ValueError):
    """A dataset file that cannot be used: missing, unreadable or truncated,
    an unknown format, or a frame without energy/forces, with a flat cell or
    with non-finite numbers. The message names the file and the frame."""


def format_of(path) -> str:
    """The dataset format of ``path`` from its name: one of ``FORMATS``."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if name.endswith(".cfg"):
        return "cfg"
    if "outcar" in name:
        return "vasp-out"
    if name.endswith(".xml") and "vasprun" in name:
        return "vasp-xml"
    raise DatasetError(f"{path}: unknown dataset format; use a name ending in .extxyz, .xyz, "
                       ".extxyz.gz, .cfg, or a VASP OUTCAR / vasprun.xml")


def _open_text(path: Path, mode: str = "rt"):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, mode)
    return open(path, mode)


def _read_text(path: Path) -> str:
    """The whole text of ``path`` (gunzipped); DatasetError for a cut or foreign ``.gz`` or a binary file."""
    try:
        with _open_text(path) as handle:
            return handle.read()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read it as text ({type(exc).__name__}: {exc}); a truncated or "
                           "corrupt file (an interrupted copy or download?): copy or write it again") from None


#: VASP's OUTCAR: the header of an ionic step's first electronic iteration, and the line of the step's final
#: free energy, which VASP prints after the forces, once the step is complete
_OUTCAR_STEP = re.compile(rb"-+ Iteration +(\d+)\( *1\) +-+")
_OUTCAR_DONE = b"free  energy   TOTEN"


def _check_outcar_steps(path: Path) -> None:
    """DatasetError when the last ionic step of an OUTCAR is incomplete: VASP stopped (wall time, a kill)
    inside it, and ASE would drop it without a word. Names the step and the line it starts on."""
    steps, done, step_line = 0, 0, 0
    with _open_text(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            match = _OUTCAR_STEP.search(line)
            if match:
                steps, step_line = int(match.group(1)), number
            elif _OUTCAR_DONE in line:
                done += 1
    if steps > done:
        raise DatasetError(f"{path}: ionic step {steps} (from line {step_line}) is cut short (no forces and final "
                           f"energy): VASP stopped inside it (wall time? killed?); {done} complete step(s) before it. "
                           f"Delete the lines from {step_line} on to use those, or rerun VASP")


# atoms.info keys carried through MLIP .cfg files as "Feature key value" lines
_CFG_FEATURES = {"system": str, "engine": str, "temperature_K": float, "strain": "vector"}


def _read_cfg(path: Path, species) -> list[Atoms]:
    from training.mtp import read_cfg

    frames = list(read_cfg(path, species=species))
    for atoms in frames:
        features = atoms.info.get("features", {})
        for key, kind in _CFG_FEATURES.items():
            if key in features:
                value = features[key]
                atoms.info[key] = (np.array(value.split(), dtype=float) if kind == "vector" else kind(value))
    return frames


def _cfg_frames(frames) -> list[Atoms]:
    out = []
    for atoms in frames:
        frame = atoms.copy()
        frame.calc = atoms.calc
        features = dict(frame.info.get("features", {}))
        for key, kind in _CFG_FEATURES.items():
            if key in frame.info:
                value = frame.info[key]
                features[key] = (" ".join(repr(float(v)) for v in value) if kind == "vector"
                                 else repr(float(value)) if kind is float else str(value))
        if features:
            frame.info["features"] = features
        out.append(frame)
    return out


def _read_raw(path: Path, fmt: str, species=None) -> list[Atoms]:
    import ase.io

    if fmt == "cfg":
        return _read_cfg(path, species)
    if fmt == "extxyz":
        frames = []
        text = _read_text(path)
        try:
            for atoms in ase.io.iread(io.StringIO(text), index=":", format="extxyz"):
                frames.append(atoms)
        except KeyError as err:  # ASE's symbol table
            raise DatasetError(f"{path}: frame {len(frames)}: unknown element {err.args[0]!r} in the species "
                               "column; use element symbols (H, He, ..., C, B, N)") from None
        except Exception as err:  # ASE raises many kinds for a broken frame
            raise DatasetError(f"{path}: frame {len(frames)} is truncated or malformed "
                               f"({type(err).__name__}: {err})") from err
        return frames
    if fmt == "vasp-out":
        _check_outcar_steps(path)
    if fmt == "vasp-xml":
        with open(path, "rb") as handle:  # ASE silently drops a truncated last step
            handle.seek(max(0, path.stat().st_size - 200))
            if b"</modeling>" not in handle.read():
                raise DatasetError(f"{path}: truncated vasprun.xml (no closing </modeling>); "
                                   "did VASP finish? Rerun it or read its OUTCAR")
    try:
        frames = list(ase.io.read(path, index=":", format=fmt))
    except Exception as err:
        raise DatasetError(f"{path}: cannot read as {fmt} (truncated or malformed file?): "
                           f"{type(err).__name__}: {err}") from err
    for atoms in frames:
        # VASP's forces are derivatives of the free energy (TOTEN), not of the sigma -> 0 energy
        results = getattr(atoms.calc, "results", {})
        if "free_energy" in results:
            results["energy"] = results["free_energy"]
    return frames


def read(path, *, require: tuple[str, ...] = ("energy", "forces"), species=None) -> list[Atoms]:
    """All frames of dataset ``path``, validated (see :func:`validate`).

    ``species``: element symbols of the MLIP types 0, 1, ... (``.cfg`` only; without it
    a cfg's atoms are the placeholder ``X`` with ``atoms.arrays['mlip_type']``).
    Returns ``list[Atoms]``, each with a :class:`SinglePointCalculator` holding
    the reference properties, so ``atoms.get_potential_energy()``,
    ``get_forces()`` and ``get_stress()`` return the file's values.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    frames = _read_raw(path, format_of(path), species)
    if not frames:
        raise DatasetError(f"{path}: contains no frames (empty or truncated file)")
    validate(frames, source=str(path), require=require)
    return frames


def read_many(paths, **kwargs) -> list[Atoms]:
    """Frames of several files concatenated; ``atoms.info['source']`` records each file name."""
    out = []
    for path in paths:
        for atoms in read(path, **kwargs):
            atoms.info.setdefault("source", Path(path).name)
            out.append(atoms)
    return out


def reference(atoms: Atoms, name: str):
    """Reference property ``name`` of a frame (energy float, forces [n, 3], stress [6]) or None."""
    calc = atoms.calc
    if calc is None or name not in getattr(calc, "results", {}):
        return None
    value = calc.results[name]
    if name == "stress":
        value = np.asarray(value, dtype=float)
        if value.shape == (3, 3):
            value = value[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return value


def validate(frames, *, source: str = "<memory>", require=("energy", "forces")) -> None:
    """Check every frame; raise :class:`DatasetError` naming ``source`` and the frame.

    Checks: the required reference properties exist (``energy``, ``forces``,
    optionally ``stress``), forces have shape [n_atoms, 3], stress shape [6],
    all are finite, and the cell has a non-zero volume (a stress or a periodic
    structure needs one).
    """
    for index, atoms in enumerate(frames):
        where = f"{source}: frame {index}"
        for name in require:
            if reference(atoms, name) is None:
                raise DatasetError(f"{where} has no {name}; every frame needs "
                                   f"{' and '.join(require)} (did the reference run finish?)")
        forces = reference(atoms, "forces")
        if forces is not None and np.shape(forces) != (len(atoms), 3):
            raise DatasetError(f"{where}: forces have shape {np.shape(forces)}, expected ({len(atoms)}, 3)")
        stress = reference(atoms, "stress")
        if stress is not None and np.shape(stress) != (6,):
            raise DatasetError(f"{where}: stress has shape {np.shape(stress)}, expected (6,)")
        for name in ("energy", "forces", "stress"):
            value = reference(atoms, name)
            if value is not None and not np.all(np.isfinite(value)):
                raise DatasetError(f"{where}: {name} is not finite (NaN or inf)")
        if abs(atoms.cell.volume) < 1e-6:
            raise DatasetError(f"{where}: cell has no volume (cell {atoms.cell.lengths().round(3).tolist()} A); "
                               "give all three cell vectors, with vacuum along z for a 2D sheet")


def with_reference(atoms: Atoms, *, energy: float, forces, stress=None) -> Atoms:
    """A copy of ``atoms`` carrying the given reference properties (eV, eV/A, eV/A^3)."""
    frame = atoms.copy()
    results = {"energy": float(energy), "forces": np.array(forces, dtype=float)}
    if stress is not None:
        results["stress"] = np.array(stress, dtype=float)
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


def write_extxyz(handle, frames) -> None:
    """Append ``frames`` to an open text handle in extended XYZ (ASE's writer)."""
    import ase.io

    ase.io.write(handle, list(frames), format="extxyz")


def write(path, frames, *, species=None) -> Path:
    """Write ``frames`` to ``path`` (extxyz, ``.extxyz.gz`` or ``.cfg``), atomically.

    ``species``: element order of the cfg type indices (cfg only; default: sorted
    by atomic number over all frames). ``system``, ``engine``, ``temperature_K``
    and ``strain`` of ``atoms.info`` travel through a cfg as ``Feature`` lines.
    Returns ``path``.
    """
    path = Path(path)
    fmt = format_of(path)
    frames = list(frames)
    validate(frames, source=str(path), require=("energy", "forces"))
    if fmt == "extxyz":
        def write_fn(tmp: Path):
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(tmp, "wt") as handle:
                write_extxyz(handle, frames)
    elif fmt == "cfg":
        from training.mtp import write_cfg

        if species is None:
            numbers = sorted({int(z) for atoms in frames for z in atoms.numbers})
            species = [chemical_symbols[z] for z in numbers]

        def write_fn(tmp: Path):
            write_cfg(tmp, _cfg_frames(frames), species=species)
    else:
        raise DatasetError(f"{path}: writing {fmt} is not supported; write .extxyz(.gz) or .cfg")
    with atomic_path(path) as tmp:
        write_fn(tmp)
    return path


def shortest_pair_distances(frames, *, search_A: float = 3.0) -> dict[str, float]:
    """The shortest distance (Å) of every species pair over ``frames``: ``{"B-C": 1.19, ...}``
    (symbols sorted; pairs never closer than ``search_A`` are left out). The MD engine's
    short-range core starts there: below it a fitted potential has seen no data."""
    from ase.neighborlist import neighbor_list

    species = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    n = len(species)
    best = np.full(n * n, np.inf)
    for atoms in frames:
        i, j, dist = neighbor_list("ijd", atoms, search_A)
        t = np.searchsorted(species, atoms.get_chemical_symbols())
        a, b = np.minimum(t[i], t[j]), np.maximum(t[i], t[j])
        np.minimum.at(best, a * n + b, dist)
    return {f"{species[a]}-{species[b]}": float(best[a * n + b])
            for a in range(n) for b in range(a, n) if np.isfinite(best[a * n + b])}
