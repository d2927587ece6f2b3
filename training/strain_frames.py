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

Relaxed-ion frames (``relaxed_strain_frames``, chain ``"strains_relaxed"``): the rattle above scatters
the reference stress of a 60-atom graphene cell by about 0.6 N/m, as much as a 50 N/m error in C12
costs at 1 % strain, so those frames pin the elastic constants only loosely.  These frames carry
the relaxed-ion response itself: a deterministic grid of the relaxed 0 K cell (the unstrained cell
once, then each of ``modes`` of :data:`training.reference.STRAIN_MODES` (uniaxial x, uniaxial y,
equi-biaxial, shear) at each of ``strains``), deformed by ``F = I + eps`` (symmetric ``eps``, atoms
carried affinely, :func:`training.reference.strained`), the positions then relaxed at fixed cell by
the engine (:func:`training.reference.relax_positions`, BFGS to ``fmax``) -> the engine's energy,
forces (all below ``fmax``) and stress at the relaxed positions: the stresses of the x, y and shear
frames are those the reference scan (:func:`training.reference.strain_scan`) fits C11, C22, C12,
C66 to.  ``info``: as above, with ``strain_mode`` (``x``, ``y``, ``xy`` = equi-biaxial as in the AIMD
plan, ``shear``, ``none`` for the unstrained cell) and ``shear_strain = gamma = 2 eps_xy`` (the
engineering shear strain, as ``e_xy`` of a simple shear above), ``chain = "strains_relaxed"``,
``independent = True``.  Measured on graphene (docs/fit.md, "Poisson's ratio"): at MLIP-2's loss
weights these frames do not pin the fitted Poisson's ratio; the embedded datasets do not hold them.
"""
from __future__ import annotations

import numpy as np

from . import engines
from .reference import STRAIN_MODES, relax_positions, strained
from .zero_kelvin import append_frames, evaluate

CHAIN = "strains"
RELAXED_CHAIN = "strains_relaxed"
RELAX_OPTIMIZER = "BFGS"  # ASE optimizer of the relaxed-ion frames (recorded in the meta file)
#: The relaxed-ion modes (keys of :data:`training.reference.STRAIN_MODES`) and the names their frames
#: carry in ``info["strain_mode"]`` (the AIMD plan's ``xy`` is equi-biaxial).
RELAXED_MODES = {"x": "x", "y": "y", "biaxial": "xy", "shear": "shear"}


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


def relaxed_strain_grid(*, strains=(-0.01, -0.005, 0.005, 0.01), modes=tuple(RELAXED_MODES)) -> list:
    """The relaxed-ion grid (module docstring): ``[(mode, e, eps [2, 2])]``, the unstrained cell first as
    ``("none", 0.0, zeros)``, then each mode at each non-zero strain, in the order given."""
    strains = [float(e) for e in strains]
    unknown = [m for m in modes if m not in RELAXED_MODES]
    bad_strains = not strains or any(not abs(e) < 0.1 for e in strains) or len(set(strains)) < len(strains)
    if unknown or not modes or bad_strains:
        raise ValueError(f"relaxed strain frames: modes={list(modes)} must be a non-empty subset of "
                         f"{list(RELAXED_MODES)} and strains={strains} distinct values with |e| < 0.1")
    grid = [("none", 0.0, np.zeros((2, 2)))]
    return grid + [(m, e, STRAIN_MODES[m](e)) for m in modes for e in strains if e != 0.0]


def relaxed_strain_frames(start, calc, *, strains=(-0.01, -0.005, 0.005, 0.01), modes=tuple(RELAXED_MODES),
                          fmax: float = 2e-3, steps: int = 1000, optimizer: str = RELAX_OPTIMIZER, progress=None) -> list:
    """Relaxed-ion frames of ``start`` (module docstring) with the energy (eV), forces (eV/Å, each
    below ``fmax``) and stress (eV/Å^3) of ``calc``; ``progress(done, total)``.  A cell whose forces do
    not fall below ``fmax`` within ``steps`` steps of ``optimizer`` (ASE's ``BFGS`` or ``FIRE``,
    :func:`training.reference.relax_positions`) stops with a ValueError naming it."""
    if not fmax > 0:
        raise ValueError(f"relaxed strain frames: fmax={fmax} must be > 0 eV/A")
    grid = relaxed_strain_grid(strains=strains, modes=modes)
    out = []
    for k, (mode, e, eps) in enumerate(grid):
        atoms = strained(start, eps)
        if not relax_positions(atoms, calc, fmax=fmax, steps=steps, optimizer=optimizer):
            raise ValueError(f"relaxed strain frames: the {mode} cell at strain {e} kept forces above fmax={fmax} "
                             f"eV/A after {steps} {optimizer} steps; raise steps or fmax")
        atoms.info = {**start.info, "temperature_K": 0.0, "strain": [float(eps[0, 0]), float(eps[1, 1])],
                      "shear_strain": float(2 * eps[0, 1]), "strain_mode": RELAXED_MODES.get(mode, mode),
                      "chain": RELAXED_CHAIN, "independent": True}
        out.append(evaluate(atoms, calc))
        if progress:
            progress(k + 1, len(grid))
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


def add_relaxed_strain_frames(dataset_path, *, engine: str = engines.DEFAULT_ENGINE,
                              engine_settings: dict | None = None, strains=(-0.01, -0.005, 0.005, 0.01),
                              modes=tuple(RELAXED_MODES), fmax: float = 2e-3, force: bool = False, work_dir=None,
                              log=print) -> int:
    """Append the relaxed-ion frames (chain ``strains_relaxed``, ``.meta.json`` key
    ``relaxed_strain_frames``) to the dataset file; :func:`training.zero_kelvin.append_frames` does the
    rest. Returns the number of frames added."""
    relaxed_strain_grid(strains=strains, modes=modes)  # bad input stops before the engine starts

    def make(start, calc, progress):
        return relaxed_strain_frames(start, calc, strains=strains, modes=modes, fmax=fmax, progress=progress)

    return append_frames(dataset_path, chain=RELAXED_CHAIN, make=make, meta_key="relaxed_strain_frames",
                         meta_info={"strains": [float(e) for e in strains], "modes": list(modes), "fmax": fmax,
                                    "optimizer": RELAX_OPTIMIZER, "module": "training.strain_frames"},
                         engine=engine, engine_settings=engine_settings, force=force, work_dir=work_dir, log=log)
