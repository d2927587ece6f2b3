"""Small cells and the built-in Morse copper shared by the MD protocol tests.

``FF``: Girifalco & Weizer's Morse copper (md_gpu.forcefields.loading ``morse-cu``); ``cu(n)``: an fcc
cube of n^3 cubic cells at a = 3.61 Å; ``triangular_sheet``: a flat triangular Morse sheet (2 atoms
per rectangular cell), periodic in x and y with vacuum along z. Expected values of tensile tests from
0 K statics of any force field on one-atom-basis cells: ``zero_stress_cubic`` (the zero-stress lattice)
and ``static_tension_slope`` (the slope a tensile fit draws through the 0 K curve).
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

from md_gpu.forcefields import Morse

FF = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
QUIET = dict(log=lambda line: None)


def cu(n: int):
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)


def triangular_sheet(a=2.9, nx=6, ny=4, vacuum=15.0):
    h = a * np.sqrt(3)
    pos = [(x + i * a, y + j * h, vacuum / 2) for j in range(ny) for i in range(nx)
           for x, y in ((0, 0), (a / 2, h / 2))]
    return Atoms("Cu" * len(pos), positions=pos, cell=[nx * a, ny * h, vacuum], pbc=[1, 1, 0])


def static_tension_slope(ff, atoms, max_strain: float, *, transverse: str = "strain", points: int = 11) -> float:
    """Least-squares slope (GPa) of sigma_xx against the strain along x over [0, max_strain] at 0 K: the line
    a tensile fit draws through a noise-free curve of the same window. ``atoms``: the unstrained cell (as
    given, not relaxed); ``transverse``: "strain" (y and z fixed) or "stress" (y and z scaled alike so that
    sigma_yy = 0, for a cubic cell under uniaxial stress). Affine strain only: right for one atom per
    primitive cell (fcc), where positions need no relaxation."""
    from scipy.optimize import newton

    from md_gpu.calculator import MDCalculator
    from md_gpu.units import EV_PER_A3_TO_GPA

    def stress(ex, et):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ np.diag([1 + ex, 1 + et, 1 + et]), scale_atoms=True)
        strained.calc = MDCalculator(ff)
        return strained.get_stress(voigt=False) * EV_PER_A3_TO_GPA

    strains = np.linspace(0.0, max_strain, points)
    curve = []
    for ex in strains:
        et = 0.0
        if transverse == "stress":  # secant iterations on sigma_yy(e_t), nearly linear, from nu = 0.4
            et = newton(lambda e: stress(ex, e)[1, 1], -0.4 * ex, x1=-0.4 * ex - 1e-3, tol=1e-10)
        curve.append(stress(ex, et)[0, 0])
    return float(np.polyfit(strains, curve, 1)[0])


def zero_stress_cubic(ff, atoms):
    """``atoms`` scaled isotropically to zero stress at 0 K under ``ff`` (a cubic cell, one atom per
    primitive cell: no internal relaxation)."""
    from scipy.optimize import brentq

    from md_gpu.calculator import MDCalculator

    def scaled(e):
        out = atoms.copy()
        out.set_cell(atoms.cell.array * (1 + e), scale_atoms=True)
        return out

    def pressure(e):
        cell = scaled(e)
        cell.calc = MDCalculator(ff)
        return cell.get_stress()[0]

    return scaled(brentq(pressure, -0.1, 0.2, xtol=1e-12))
