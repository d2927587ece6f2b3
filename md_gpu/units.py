"""Unit conversions, done once where input comes in.

Inside the engine everything is in ASE units: energy eV, length Å, mass amu,
time in ASE's unit Å·sqrt(amu/eV) (= 10.18 fs), so that ``0.5 * m * v**2`` is
in eV and ``F / m * dt`` is a velocity without extra factors. Interfaces take
and report time in fs, temperature in K, stress in GPa (3D) or N/m (2D).
"""
from __future__ import annotations

from ase import units

FS = units.fs                       # ASE time units per fs
KB = units.kB                       # eV / K
EV_PER_A3_TO_GPA = 1.0 / units.GPa  # eV/Å^3 -> GPa (160.2...)
EV_PER_A2_TO_N_PER_M = 16.02176634  # eV/Å^2 -> N/m  (1 eV/Å^2 = 1.602e-19 J / 1e-20 m^2)
GPA_A_TO_N_PER_M = 0.1              # GPa x Å -> N/m
PER_S_TO_PER_FS = 1e-15             # rate 1/s -> 1/fs (strain rates come in per second, MD steps in fs)

# Heat transport (J in eV Å/fs, see md_gpu.protocols.heat_current); 1 eV = 1.602176634e-19 J.
EV_PER_FS_A_K_TO_W_PER_MK = 1.602176634e6    # eV/(fs Å K) -> W/(m K): conductivity J / (V grad T), J/(T V F_e)
EV_PER_FS_A2_TO_W_PER_M2 = 1.602176634e16    # eV/(fs Å^2) -> W/m^2: heat flux; per K -> W/(m^2 K) conductance
