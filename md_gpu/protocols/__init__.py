"""MD protocols: equilibrate, uniaxial tension, elastic constants, interface tension, heat transport.

Each protocol is a function that builds a list of :class:`md_gpu.simulation.Stage`
(plain data), runs it with :class:`md_gpu.simulation.Simulation` and analyses
the thermo table with :mod:`md_gpu.analysis`. The tensile test's failure detection (crack or
yield) is :mod:`.fracture`. Heat transport: the heat current
(:mod:`.thermal_current`), HNEMD (:mod:`.thermal_hnemd`), NEMD and the length
extrapolation (:mod:`.thermal_nemd`), interface NEMD (:mod:`.thermal_interface`).
The lists of choices of the settings (:data:`THERMOSTATS`, :data:`TRANSVERSE`,
:data:`GRADIENTS`) are defined once, in :mod:`.common`.
"""
from .common import GRADIENTS, THERMOSTATS, TRANSVERSE, RunSettings, estimate_modulus, equilibrate
from .elastic import elastic_constants, static_elastic_constants
from .tensile import interface_tensile, tensile
from .thermal_current import heat_current, heat_currents_per_atom
from .thermal_hnemd import hnemd
from .thermal_interface import interface_nemd
from .thermal_nemd import extrapolate_length, nemd

__all__ = ["RunSettings", "THERMOSTATS", "TRANSVERSE", "GRADIENTS", "estimate_modulus", "equilibrate", "tensile",
           "interface_tensile", "elastic_constants", "static_elastic_constants", "heat_current",
           "heat_currents_per_atom", "hnemd", "nemd", "interface_nemd", "extrapolate_length"]
