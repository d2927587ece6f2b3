"""Small cells and the built-in Morse copper shared by the MD protocol tests.

``FF``: Girifalco & Weizer's Morse copper (md_gpu.forcefields.loading ``morse-cu``); ``cu(n)``: an fcc
cube of n^3 cubic cells at a = 3.61 Å; ``triangular_sheet``: a flat triangular Morse sheet (2 atoms
per rectangular cell), periodic in x and y with vacuum along z. Expected values of tensile tests at 0 K,
on cells with one atom per primitive cell: ``static_tension_slope`` (the slope a tensile fit draws
through the 0 K curve of any force field, transverse fixed) and ``fcc_morse_stress_GPa`` (the stress of
fcc Morse copper by an analytic lattice sum, independent of md_gpu).
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


def static_tension_slope(ff, atoms, max_strain: float, *, points: int = 11) -> float:
    """Least-squares slope (GPa) of sigma_xx against the strain along x over [0, max_strain] at 0 K, the
    transverse axes fixed: the line a tensile fit draws through a noise-free curve of the same window.
    ``atoms``: the unstrained cell (as given, not relaxed). Affine strain only: right for one atom per
    primitive cell (fcc, the triangular sheet), where positions need no relaxation."""
    from md_gpu.calculator import MDCalculator
    from md_gpu.units import EV_PER_A3_TO_GPA

    strains = np.linspace(0.0, max_strain, points)
    stresses = []
    for e in strains:
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ np.diag([1 + e, 1.0, 1.0]), scale_atoms=True)
        strained.calc = MDCalculator(ff)
        stresses.append(strained.get_stress(voigt=False)[0, 0] * EV_PER_A3_TO_GPA)
    return float(np.polyfit(strains, stresses, 1)[0])


def fcc_morse_stress_GPa(lattice_A: float, deformation, *, D=0.3429, a=1.3588, r0=2.866, cutoff=5.5):
    """Stress [3, 3] (GPa, ASE sign: positive = tensile) of a perfect fcc crystal (cubic lattice constant
    ``lattice_A``) under the homogeneous ``deformation`` F [3, 3], for the shifted-force Morse pair potential
    (defaults: ``FF``), by the lattice sum sigma = 1/(2 V_atom) sum_j phi_sf'(r_j) r_j r_j^T / r_j over the
    neighbours within the cut-off. Analytic, independent of md_gpu: one atom per primitive cell, so the
    affine deformation is exact."""
    n = int(np.ceil(cutoff / lattice_A)) + 1
    grid = np.array(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij")).reshape(3, -1).T
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    sites = ((grid[:, None, :] + basis[None]).reshape(-1, 3) * lattice_A) @ np.asarray(deformation).T
    r = np.linalg.norm(sites, axis=1)
    keep = (r > 1e-9) & (r < cutoff)
    sites, r = sites[keep], r[keep]

    def dphi(x):
        e = np.exp(-a * (x - r0))
        return -2.0 * a * D * (e * e - e)

    weights = (dphi(r) - dphi(cutoff)) / r
    volume = lattice_A ** 3 / 4 * np.linalg.det(deformation)
    return 0.5 * np.einsum("p,pa,pb->ab", weights, sites, sites) / volume * 160.21766208  # eV/Å^3 -> GPa
