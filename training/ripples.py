"""Out-of-plane ripple frames: the bending data that short AIMD chains of flat sheets lack.

Why: the NVT chains of :mod:`training.aimd` are short (about 135 fs each), too short for the slow
flexural (out-of-plane) modes of a 2D sheet to grow, so every frame is nearly flat.  An MTP fitted to
them alone has never seen a bent sheet and may give a corrugation no restoring energy, so that a sheet
buckles in MD and a tensile test only flattens the ripple.

Data flow: the system's relaxed 0 K start cell (:func:`training.aimd.start_structure`, the cell
the AIMD chains start from; cached beside the dataset) -> ``base_cells`` (unstrained and a few
small biaxial strains) -> ``ripple`` (each base frame with sine
ripples ``z += A sin(2 pi n s / L + phi)`` along s = x and y, n = 1, 2 waves per cell, random
phase phi and an amplitude A = slope * lambda / (2 pi) set by a random largest slope of the sheet,
so short waves are bent as gently as long ones (lambda = L / n), plus small random z noise) -> the reference engine's energy, forces
and stress -> frames of chain ``"ripples"`` appended to the dataset (:func:`add_ripples`).

Why flat 0 K cells and not AIMD frames: the thermal displacements of a 300 K frame carry tens of
meV/atom, the bends a few, so on top of AIMD frames the bending energy is lost in that noise.

Each ripple frame has ``info`` system, temperature_K = 0, strain, engine, ``chain = "ripples"``, ``independent = True`` and ``ripple = [axis, waves, amplitude_A, phase]``.
Being independent single points, not a correlated trajectory, they all enter the preliminary fit
of passive training (:func:`training.passive.chain_subsample`; a subsample of them would leave most of
the bending data out of the fit).
"""
from __future__ import annotations

import numpy as np

from . import engines
from .zero_kelvin import append_frames, evaluate

CHAIN = "ripples"


def base_cells(start, strains=(0.0, 0.01, 0.02)) -> list:
    """The relaxed 0 K cell ``start`` and copies of it under small affine biaxial ``strains``."""
    cells = []
    for strain in strains:
        atoms = start.copy()
        atoms.calc = None
        cell = atoms.cell.array.copy()
        cell[:2] *= 1.0 + strain
        atoms.set_cell(cell, scale_atoms=True)
        atoms.info = {**start.info, "temperature_K": 0.0, "strain": [float(strain), float(strain)]}
        cells.append(atoms)
    return cells


def ripple(atoms, *, axis: int, waves: int, amplitude_A: float, phase: float, noise_A: float, rng):
    """A copy of ``atoms`` with ``z += amplitude_A sin(2 pi waves s / L_axis + phase) + noise``
    (Å; s the fractional position along the in-plane ``axis`` times its length L)."""
    bent = atoms.copy()
    bent.calc = None
    s = bent.get_scaled_positions(wrap=False)[:, axis]
    z = amplitude_A * np.sin(2.0 * np.pi * waves * s + phase) + rng.normal(0.0, noise_A, len(bent))
    positions = bent.positions.copy()
    positions[:, 2] += z
    bent.positions = positions
    bent.info = {**atoms.info, "chain": CHAIN, "independent": True,
                 "ripple": [int(axis), int(waves), float(amplitude_A), float(phase)]}
    return bent


def ripple_frames(bases, calc, *, count: int = 24, slope=(0.05, 0.3), noise_A: float = 0.01, seed: int = 0,
                  progress=None) -> list:
    """``count`` ripple frames of the flat cells ``bases`` with energy, forces and stress from ``calc``.

    The bends cycle over axis (x, y) and waves per cell (1, 2) and over the base cells; the
    largest slope ``2 pi A / lambda`` of each ripple is uniform in ``slope`` (0.3 is 17 degrees;
    the 2.5 Å, 68 Å ripple that buckled the stripe cell had 0.23). ``progress(done, total)`` after
    each frame.
    """
    if count < 1 or not 0 < slope[0] <= slope[1]:
        raise ValueError(f"ripples: count={count} must be >= 1 and 0 < slope[0] <= slope[1] (got {list(slope)})")
    rng = np.random.default_rng(seed)
    shapes = [(axis, waves) for waves in (1, 2) for axis in (0, 1)]
    out = []
    for k in range(count):
        axis, waves = shapes[k % len(shapes)]
        base = bases[(k // len(shapes)) % len(bases)]
        wavelength = float(np.linalg.norm(base.cell[axis])) / waves
        bent = ripple(base, axis=axis, waves=waves, amplitude_A=float(rng.uniform(*slope)) * wavelength / (2 * np.pi),
                      phase=float(rng.uniform(0, 2 * np.pi)), noise_A=noise_A, rng=rng)
        out.append(evaluate(bent, calc))
        if progress:
            progress(k + 1, count)
    return out


def add_ripples(dataset_path, *, engine: str = engines.DEFAULT_ENGINE, engine_settings: dict | None = None,
                count: int = 24, slope=(0.05, 0.3), seed: int = 0, force: bool = False, work_dir=None,
                log=print) -> int:
    """Append ``count`` ripple frames to the dataset file (and record them in its ``.meta.json``, key
    ``ripples``); :func:`training.zero_kelvin.append_frames` does the rest (start cell, replacing with
    ``force``, atomic rewrite). Returns the number of frames added."""
    def make(start, calc, progress):
        return ripple_frames(base_cells(start), calc, count=count, slope=slope, seed=seed, progress=progress)

    return append_frames(dataset_path, chain=CHAIN, make=make, meta_key="ripples",
                         meta_info={"slope": list(slope), "seed": seed, "module": "training.ripples"},
                         engine=engine, engine_settings=engine_settings, force=force, work_dir=work_dir, log=log)
