"""Strain frames: small homogeneous in-plane strains of the 0 K cell, the elastic data AIMD chains lack.

Why: the AIMD chains strain in 5 % steps at 300-1500 K, so near the 0 K structure the training set
holds thermal noise, not the curvature of the energy with strain; without these frames the fitted
elastic constants (C11, C12, the 2D Young's modulus) can miss the reference engine's by tens of per cent.

Data flow: the system's relaxed 0 K start cell (:mod:`training.zero_kelvin`) -> ``strained_cells``:
``count`` copies deformed by ``F = I + [[e_xx, e_xy, 0], [0, e_yy, 0], [0, 0, 0]]`` (cell rows
``h' = h F^T``, atoms carried affinely) with ``e_xx, e_yy, e_xy`` uniform in ``[-max_strain,
max_strain]``, every atom then displaced by Gaussian noise of ``rattle_A`` (Å, all three directions:
forces away from the minimum carry the internal-relaxation information) -> the engine's energy,
forces, stress -> frames of chain ``"strains"`` appended to the dataset.

Each frame has ``info`` system, engine, temperature_K = 0, ``strain = [e_xx, e_yy]`` (as every
frame of the datasets), ``shear_strain = e_xy``,
``chain = "strains"`` and ``independent = True``: as single points they all enter the preliminary
fit of passive training (:func:`training.passive.chain_subsample`).
"""
from __future__ import annotations

import numpy as np

from . import engines
from .zero_kelvin import append_frames, evaluate

CHAIN = "strains"


def strained_cells(start, *, count: int = 24, max_strain: float = 0.02, rattle_A: float = 0.03,
                   seed: int = 0) -> list:
    """``count`` copies of ``start`` under random small in-plane strains plus a rattle (module docstring)."""
    if count < 1 or not 0 < max_strain < 0.2 or rattle_A < 0:
        raise ValueError(f"strain frames: count={count} must be >= 1, max_strain={max_strain} in (0, 0.2) and "
                         f"rattle_A={rattle_A} >= 0")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        exx, eyy, exy = (float(e) for e in rng.uniform(-max_strain, max_strain, 3))
        deformation = np.eye(3)
        deformation[0, 0] += exx
        deformation[1, 1] += eyy
        deformation[0, 1] += exy
        atoms = start.copy()
        atoms.calc = None
        atoms.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
        atoms.positions = atoms.positions + rng.normal(0.0, rattle_A, atoms.positions.shape)
        atoms.info = {**start.info, "temperature_K": 0.0, "strain": [exx, eyy], "shear_strain": exy,
                      "chain": CHAIN, "independent": True}
        out.append(atoms)
    return out


def strain_frames(start, calc, *, count: int = 24, max_strain: float = 0.02, rattle_A: float = 0.03,
                  seed: int = 0, progress=None) -> list:
    """:func:`strained_cells` with energy, forces and stress from ``calc``; ``progress(done, total)``."""
    out = []
    for k, atoms in enumerate(strained_cells(start, count=count, max_strain=max_strain, rattle_A=rattle_A,
                                             seed=seed)):
        out.append(evaluate(atoms, calc))
        if progress:
            progress(k + 1, count)
    return out


def add_strain_frames(dataset_path, *, engine: str = engines.DEFAULT_ENGINE, engine_settings: dict | None = None,
                      count: int = 24, max_strain: float = 0.02, rattle_A: float = 0.03, seed: int = 0,
                      force: bool = False, work_dir=None, log=print) -> int:
    """Append ``count`` strain frames to the dataset file (``.meta.json`` key ``strain_frames``);
    :func:`training.zero_kelvin.append_frames` does the rest. Returns the number of frames added."""
    def make(start, calc, progress):
        return strain_frames(start, calc, count=count, max_strain=max_strain, rattle_A=rattle_A, seed=seed,
                             progress=progress)

    return append_frames(dataset_path, chain=CHAIN, make=make, meta_key="strain_frames",
                         meta_info={"max_strain": max_strain, "rattle_A": rattle_A, "seed": seed,
                                    "module": "training.strain_frames"},
                         engine=engine, engine_settings=engine_settings, force=force, work_dir=work_dir, log=log)
