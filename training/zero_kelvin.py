"""0 K single-point frames appended to a dataset: the machinery that ripple and strain frames share.

Why: the AIMD chains (:mod:`training.aimd`) are short, hot and strained in 5 % steps; what they lack
near the 0 K structure (bends: :mod:`training.ripples`; small homogeneous strains:
:mod:`training.strain_frames`) is added as independent single points of the reference engine.

Data flow::

    <system>.extxyz[.gz] (+ <system>.meta.json beside it)
      -> the system's relaxed 0 K cell (<system>.structure.extxyz beside the dataset, or the dataset's
         built-in builder relaxed by training.aimd.start_structure, cached in ``work_dir``), checked
         against the dataset's cell
      -> make(start, calc, progress) -> frames (positions, cell, info)
      -> the engine's energy (eV), forces (eV/Å) and stress (eV/Å^3) per frame (:func:`evaluate`)
      -> frames of ``chain`` (info ``independent = True``, ``temperature_K = 0``) appended to the
         dataset, rewritten atomically; ``meta[meta_key]`` records how they were made

A dataset that already holds frames of ``chain`` is left alone unless ``force`` (then they are
replaced); frames of every other chain are kept as they are.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from common.atomic import write_text

from . import aimd as aimd_module
from . import datasets, engines


def evaluate(atoms, calc):
    """A copy of ``atoms`` carrying ``calc``'s energy (eV), forces (eV/Å) and stress (eV/Å^3) as reference."""
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = None
    return datasets.with_reference(atoms, energy=energy, forces=forces, stress=stress)


def _start_cell(path: Path, system: str, meta: dict, calc, work_dir):
    """The dataset's relaxed 0 K cell: ``<system>.structure.extxyz`` beside it, or (datasets that name a
    built-in builder in their metadata) the builder's cell relaxed by ``calc``."""
    import ase.io

    from . import structures

    cell_file = aimd_module.structure_path(path)
    if cell_file.is_file():
        return ase.io.read(cell_file, format="extxyz")
    builder = structures.canonical(meta.get("structure", {}).get("builder", "") or system)
    free = "normal" if builder == "interface" else "lattice"
    with tempfile.TemporaryDirectory() as scratch:  # work_dir: where a relaxed start cell may be cached
        return aimd_module.start_structure(system, Path(work_dir or scratch), calc, atoms=structures.build(builder),
                                           free=free)


def append_frames(dataset_path, *, chain: str, make: Callable, meta_key: str, meta_info: dict,
                  engine: str = engines.DEFAULT_ENGINE, engine_settings: dict | None = None, force: bool = False,
                  work_dir=None, log=print) -> int:
    """Append the frames ``make(start, calc, progress)`` returns (module docstring); returns how many.

    ``progress(done, total)`` prints a line with rate and ETA; ``meta_info`` goes into
    ``meta[meta_key]`` with the frame count, the engine and the seconds it took.
    """
    path = Path(dataset_path)
    frames = datasets.read(path, require=("energy", "forces"))
    old = [a for a in frames if a.info.get("chain") == chain]
    if old and not force:
        log(f"{path}: already holds {len(old)} '{chain}' frames (use force to replace them)")
        return 0
    kept = [a for a in frames if a.info.get("chain") != chain]
    t0 = time.time()

    def progress(done, total):
        rate = done / max(time.time() - t0, 1e-9)
        log(f"{path.name}: {chain} frame {done}/{total}, {rate:.2f} frames/s, ETA {(total - done) / rate:.0f} s")

    calc = engines.make_calculator(engine, engine_settings)
    meta_path = path.with_name(path.name.split(".")[0] + ".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    system = str(kept[0].info.get("system") or meta.get("system") or path.name.split(".")[0])
    start = _start_cell(path, system, meta, calc, work_dir)
    if not np.allclose(start.cell.lengths()[:2], kept[0].cell.lengths()[:2], rtol=0.05):
        raise datasets.DatasetError(f"{path}: the relaxed start cell of '{system}' ({start.cell.lengths()[:2]} A) "
                                    f"is not the dataset's cell ({kept[0].cell.lengths()[:2]} A); put the 0 K "
                                    f"cell beside the dataset as {aimd_module.structure_path(path).name}")
    start.info = {"system": system, "engine": kept[0].info.get("engine", engine)}
    new = make(start, calc, progress)
    datasets.write(path, kept + new)
    if meta_path.is_file():
        meta["n_frames"] = len(kept) + len(new)
        meta[meta_key] = {"frames": len(new), **meta_info, "engine": engine, "seconds": round(time.time() - t0, 1)}
        text = json.dumps(meta, indent=1) + "\n"
        write_text(meta_path, text)
    return len(new)
