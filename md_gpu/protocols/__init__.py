"""MD protocols: equilibrate, uniaxial tension, elastic constants, interface tension, heat transport.

Each protocol is a function that builds a list of :class:`md_gpu.simulation.Stage`
(plain data), runs it with :class:`md_gpu.simulation.Simulation` and analyses
the thermo table with :mod:`md_gpu.analysis` (heat transport: :mod:`.thermal`).
"""
from .common import RunSettings, estimate_modulus, equilibrate
from .elastic import elastic_constants, static_elastic_constants
from .tensile import interface_tensile, tensile
from .thermal import extrapolate_length, heat_current, heat_currents_per_atom, hnemd, interface_nemd, nemd

__all__ = ["RunSettings", "estimate_modulus", "equilibrate", "tensile", "interface_tensile",
           "elastic_constants", "static_elastic_constants", "heat_current", "heat_currents_per_atom",
           "hnemd", "nemd", "interface_nemd", "extrapolate_length"]
