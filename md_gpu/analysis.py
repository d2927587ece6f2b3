"""From a run's thermo table to a stress-strain curve and tensile properties, with statistics over seeds.

Units: strain dimensionless (engineering, relative to the cell at the start of
the deformation stage); 3D stress in GPa (virial + kinetic over the cell
volume); for a 2D sheet (vacuum along z) the 2D stress is
``sigma_2D [N/m] = sigma_3D [GPa] x Lz [Å] x 0.1``, and a GPa value "at the
phase's effective thickness t" is ``sigma_2D / (0.1 t [Å])``.

* Young's modulus: slope of a straight-line fit (with intercept) of stress on
  strain over ``fit_window`` (default 0 ... 1 % strain).
* Poisson's ratio: minus the slope of transverse strain on axial strain over
  the same window.
* Ultimate tensile strength: the maximum stress; failure strain: the strain at
  that maximum.
* Statistics over seeds: ``{"mean", "sem", "n"}``, ``sem`` = sample standard
  deviation / sqrt(n) (0 when n = 1), as in docs/properties.md.
* Statistics within one run: :class:`BlockSums` accumulates per-step samples in
  consecutive blocks; :func:`mean_sem_blocks` gives the mean and standard error
  of the block means (sample std / sqrt(blocks)).
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .cell_control import axis_index
from .errors import MDRunError
from .units import GPA_A_TO_N_PER_M

VOIGT_COLUMN = {0: "stress_xx_GPa", 1: "stress_yy_GPa", 2: "stress_zz_GPa"}
CELL_COLUMN = {0: "cell_xx_A", 1: "cell_yy_A", 2: "cell_zz_A"}


def stress_strain_curve(thermo: dict, first_row: int, axis, transverse=None, *, sheet: bool) -> dict:
    """Curve of the deformation stage that starts at thermo row ``first_row``.

    Returns arrays: ``strain``, ``transverse_strain`` (zeros if ``transverse`` is None),
    ``stress_GPa`` (3D, along ``axis``), ``temperature_K``, ``time_fs`` and, for a
    sheet, ``stress_N_per_m`` (2D).
    """
    a = axis_index(axis)
    rows = slice(first_row, None)
    length = np.asarray(thermo[CELL_COLUMN[a]])[rows]
    curve = {"strain": length / length[0] - 1.0,
             "stress_GPa": np.asarray(thermo[VOIGT_COLUMN[a]])[rows],
             "temperature_K": np.asarray(thermo["temperature_K"])[rows],
             "time_fs": np.asarray(thermo["time_fs"])[rows]}
    if transverse is not None:
        t = axis_index(transverse)
        lt = np.asarray(thermo[CELL_COLUMN[t]])[rows]
        curve["transverse_strain"] = lt / lt[0] - 1.0
    else:
        curve["transverse_strain"] = np.zeros_like(length)
    if sheet:
        curve["stress_N_per_m"] = curve["stress_GPa"] * np.asarray(thermo["cell_zz_A"])[rows] * GPA_A_TO_N_PER_M
    return curve


def tensile_properties(strain, stress, transverse_strain=None, *, fit_window=(0.0, 0.01)) -> dict:
    """Young's modulus (stress unit), Poisson's ratio, UTS (stress unit), failure strain.

    strain [m], stress [m] (any unit; the modulus and strength come out in it),
    transverse_strain [m] or None (then no Poisson's ratio).
    """
    strain = np.asarray(strain, dtype=float)
    stress = np.asarray(stress, dtype=float)
    lo, hi = fit_window
    window = (strain >= lo) & (strain <= hi)
    if window.sum() < 3:
        raise MDRunError(f"only {int(window.sum())} samples between strain {lo} and {hi}: record thermo "
                         "more often (thermo_every) or widen the fit window to fit a Young's modulus")
    out = {"youngs_modulus": float(np.polyfit(strain[window], stress[window], 1)[0])}
    if transverse_strain is not None:
        out["poisson_ratio"] = float(-np.polyfit(strain[window], np.asarray(transverse_strain)[window], 1)[0])
    peak = int(np.argmax(stress))
    out["ultimate_strength"] = float(stress[peak])
    out["failure_strain"] = float(strain[peak])
    return out


def mean_sem(values) -> dict:
    """``{"mean", "sem", "n"}`` of a list of numbers (NaNs dropped)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "sem": float("nan"), "n": 0}
    sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sem": sem, "n": int(v.size)}


def summarize(runs: list[dict]) -> dict:
    """Statistics over seeds of the numeric keys that all runs share (e.g. tensile properties)."""
    keys = [k for k in runs[0] if all(k in r for r in runs) and isinstance(runs[0][k], (int, float))]
    return {k: mean_sem([r[k] for r in runs]) for k in keys}


class BlockSums:
    """Sums per-step samples into ``n_blocks`` blocks of consecutive steps (``n_steps`` in all).

    ``add(name=value, ...)`` once per step (values: numbers or arrays of the run's backend, summed
    there); ``means(name)`` [n_blocks, ...] (NumPy) at the end; ``counts`` [n_blocks] samples per block.
    """

    def __init__(self, n_steps: int, n_blocks: int):
        self.n_steps, self.n_blocks, self.k = n_steps, n_blocks, 0
        self.sums: dict = {}
        self.counts = np.zeros(n_blocks)

    def add(self, **samples):
        b = min(self.k * self.n_blocks // self.n_steps, self.n_blocks - 1)
        for name, value in samples.items():
            if name not in self.sums:
                self.sums[name] = [0.0] * self.n_blocks
            self.sums[name][b] = self.sums[name][b] + value
        self.counts[b] += 1
        self.k += 1

    def means(self, name) -> np.ndarray:
        sums = np.array([to_numpy(s) for s in self.sums[name]], dtype=float)
        return sums / self.counts.reshape((-1,) + (1,) * (sums.ndim - 1))


def mean_sem_blocks(values) -> tuple[float, float]:
    """Mean and standard error of block means [b] (sample std / sqrt(b); NaN for one block)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
