"""MD protocols: equilibrate, uniaxial tension, elastic constants, interface tension.

Each protocol is a function that builds a list of :class:`md_gpu.simulation.Stage`
(plain data), runs it with :class:`md_gpu.simulation.Simulation` and analyses
the thermo table with :mod:`md_gpu.analysis`.
"""
from .common import RunSettings, estimate_modulus, equilibrate
from .elastic import elastic_constants, static_elastic_constants
from .tensile import interface_tensile, tensile

__all__ = ["RunSettings", "estimate_modulus", "equilibrate", "tensile", "interface_tensile",
           "elastic_constants", "static_elastic_constants"]
