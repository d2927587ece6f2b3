"""Force fields of the MD engine; all follow the one contract of :mod:`md_gpu.forcefields.base`."""
from .base import ForceField, ForceResult, compute_forces, forces_and_virial
from .pair import LennardJones, Morse

__all__ = ["ForceField", "ForceResult", "compute_forces", "forces_and_virial", "LennardJones", "Morse"]
