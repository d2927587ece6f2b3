"""Recipe of the 0 K ideal strength of ``graphene_l08.mtp`` that ``tests/test_md_graphene.py`` compares its
300 K tensile runs with (the numbers are in that test).

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python tests/data/md/ideal_strength_l08.py

Method: the 60-atom rectangular graphene sheet of ``tests/test_md_graphene.py`` (a = 2.45716 Å, open
along z), relaxed at 0 K (positions and in-plane cell, BFGS, fmax 1e-4 eV/Å); then along x and along y
the load axis is stretched in steps of 1 % strain up to 35 %, each step starting from the previous
relaxed structure, with the positions and the transverse cell length relaxed (uniaxial stress; BFGS,
fmax 1e-3 eV/Å). Prints the 2D stress (N/m: the 3D stress times the cell height) at every step and the
peak (strain, stress) per direction. About 4 minutes on one core.
"""
import numpy as np
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from md_gpu.calculator import MDCalculator
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.structures import as_sheet
from md_gpu.units import EV_PER_A3_TO_GPA, GPA_A_TO_N_PER_M
from training.structures import graphene

POT = "tests/data/md/graphene_l08.mtp"


def main():
    ff = MTPForceField.read(POT)
    start = as_sheet(graphene(a=2.45716))
    start.calc = MDCalculator(ff)
    BFGS(FrechetCellFilter(start, mask=[True, True, False, False, False, True]), logfile=None).run(fmax=1e-4,
                                                                                                steps=500)
    for axis in (0, 1):
        current, curve = start, []
        for strain in np.arange(0.0, 0.3501, 0.01):
            cell = current.cell.array.copy()
            cell[axis] = start.cell.array[axis] * (1 + strain)
            stretched = current.copy()
            stretched.set_cell(cell, scale_atoms=True)
            stretched.calc = MDCalculator(ff)
            mask = [False] * 6
            mask[1 - axis] = True  # the transverse in-plane length relaxes: uniaxial stress
            BFGS(FrechetCellFilter(stretched, mask=mask), logfile=None).run(fmax=1e-3, steps=1000)
            stress = stretched.get_stress(voigt=False)[axis, axis] * EV_PER_A3_TO_GPA
            curve.append((strain, stress * stretched.cell[2, 2] * GPA_A_TO_N_PER_M))
            print(f"{'xy'[axis]} strain {strain:.2f} stress {curve[-1][1]:.2f} N/m", flush=True)
            current = stretched
        peak = max(curve, key=lambda row: row[1])
        print(f"peak {'xy'[axis]}: strain {peak[0]:.2f}, stress {peak[1]:.2f} N/m")


if __name__ == "__main__":
    main()
