"""ASE's ``FrechetCellFilter`` with a matrix exponential and logarithm that give the same bits every time.

``frechet_cell_filter(atoms, mask) -> FrechetCellFilter``: the filter every relaxation of positions and
cell in this project uses (0 K relaxations of the data stage and of md_gpu, the loading barostat's static
stiffness, the elastic constants' reference cell). The filter's degrees of freedom for the cell are the
logarithm of the deformation gradient F (Tadmor et al., Phys. Rev. B 59, 235 (1999)); ASE computes
``logm(F)`` and ``expm(log F)`` with SciPy. SciPy before 1.13 picks the Padé order of ``expm`` from a
norm estimate that reads uninitialised scratch memory (scipy/scipy#18086, fixed by #20234), and its
``logm`` varies the same way: the same relaxation then ends in different last bits from one call or
process to the next (9 outcomes in 40 repetitions of one BFGS relaxation of a 64-atom sheet), and an MD
run that starts from such a relaxation differs between a serial and an MPI run. Here:

* ``expm(A)``: SciPy's ``expm_frechet`` (Al-Mohy and Higham, SIAM J. Matrix Anal. Appl. 30, 1639 (2009)),
  array code with the scaling chosen from exact 1-norms, which returns exp(A) with its derivative;
* ``logm(F)``: the series log F = 2 artanh Z = 2 (Z + Z^3/3 + Z^5/5 + ...), Z = (F - I)(F + I)^-1 (both
  functions of F, so they commute), summed to Z^59: for ||Z||_1 <= 0.5, F within about 60 % of the
  identity, the remainder is below 1e-18 of ||log F||. Farther from it, SciPy's ``logm`` is used.

Both agree with SciPy's to 1e-15 (tests/test_cell_filter.py).
"""
from __future__ import annotations

import numpy as np

#: largest ||Z||_1 of the artanh series (module docstring)
SERIES_MAX = 0.5
#: the highest odd power of Z summed
SERIES_ORDER = 59


def expm(a: np.ndarray) -> np.ndarray:
    """exp(a) of a square matrix ``a``, the same bits on every call (module docstring)."""
    from scipy.linalg import expm_frechet

    a = np.asarray(a, dtype=float)
    return expm_frechet(a, np.zeros_like(a), compute_expm=True)[0]


def logm(f: np.ndarray) -> np.ndarray:
    """The principal logarithm of a square matrix ``f`` near the identity, the same bits on every call."""
    f = np.asarray(f, dtype=float)
    eye = np.eye(len(f))
    z = np.linalg.solve((f + eye).T, (f - eye).T).T  # (F - I)(F + I)^-1
    if np.abs(z).sum(axis=0).max() > SERIES_MAX:
        from scipy.linalg import logm as scipy_logm

        return np.real_if_close(scipy_logm(f))
    z2, term, total = z @ z, z.copy(), z.copy()
    for k in range(3, SERIES_ORDER + 1, 2):
        term = term @ z2
        total = total + term / k
    return 2.0 * total


def frechet_cell_filter(atoms, mask=None):
    """``ase.filters.FrechetCellFilter(atoms, mask=mask)`` computing with :func:`expm` and :func:`logm`.

    ASE keeps the functions it calls as attributes of the filter and of its cell utility (``_utility``,
    ASE >= 3.24); both are replaced where they exist."""
    from ase.filters import FrechetCellFilter

    target = FrechetCellFilter(atoms, mask=mask)
    for holder in (target, getattr(target, "_utility", None)):
        if holder is not None and hasattr(holder, "expm"):
            holder.expm, holder.logm = expm, logm
    return target
