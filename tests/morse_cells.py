"""Small cells and the built-in Morse copper shared by the MD protocol tests.

``FF``: Girifalco & Weizer's Morse copper (md_gpu.forcefields.loading ``morse-cu``); ``cu(n)``: an fcc
cube of n^3 cubic cells at a = 3.61 Å; ``triangular_sheet``: a flat triangular Morse sheet (2 atoms
per rectangular cell), periodic in x and y with vacuum along z.
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
