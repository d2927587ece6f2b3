"""Thin adapter: GPUMD's neuroevolution potential (NEP3, NEP4, optional ZBL) on the md_gpu force contract.

Contract: ``NEPForceField.read(path, species=None)`` reads a ``nep.txt``
(:func:`training.nep.read_nep`); ``species`` are the file's elements, ``cutoff`` (Å) its largest
cut-off, and ``evaluate(types, i, j, d, *, xp)`` is :meth:`training.nep.NEPEvaluator.evaluate`'s
contract (the FULL pair list of :mod:`md_gpu.forcefields.base`, ``d = r_j + shift - r_i``, |d| < cutoff;
site energies ``U_i`` [n] eV and ``dE/dd`` [p, 3] eV/Å; the model and its arithmetic are documented in
:mod:`training.nep.model`), run as the MTP runs: on the CPU by the compiled kernel
(``training.nep.evaluate_compiled``, :mod:`training.nep.host_kernel`; the array code when
``MULTISCALE_CPU_KERNELS=numpy`` or no C++ compiler works), on CuPy by the CUDA build of the same kernel
source (``training.nep.evaluate_fused``; the array code when NVRTC cannot build it); the first result
of each kernel is checked against the array code (``training.nep.KernelMismatch``). Only ``U_{i_p}`` depends on ``d_p``, so
:func:`md_gpu.forcefields.base.forces_and_virial` gives forces, the virial and GPUMD's many-body
per-atom virials (pair ``p`` to atom ``j_p``), exactly as NEP_CPU's ``find_force_*_small_box``.
The MD engine adds nothing between the model and its forces, and ``training.nep_fit`` fits with the
same evaluation, so a fitted NEP runs exactly as it was fitted.

A file that cannot be read (:class:`training.nep.NEPError`) and a species list that is not the file's
are :class:`~md_gpu.errors.MDSetupError` (the reader's message unchanged). :class:`NEPCalculator` is
the ASE calculator of a NEP through md_gpu's neighbour list and force code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.arrays import array_module
from training.nep import NEPError, NEPEvaluator, NEPModel, evaluate_compiled, evaluate_fused, read_nep

from ..calculator import MDCalculator
from ..errors import MDSetupError


class NEPForceField:
    """A NEP (:class:`training.nep.NEPModel`, evaluated by :class:`training.nep.NEPEvaluator`) on the md_gpu
    force contract: ``model``, ``species``, ``cutoff`` (Å), ``evaluate``."""

    def __init__(self, model: NEPModel):
        self.model = model
        self.nep = NEPEvaluator(model)
        self.species = self.nep.species
        self.cutoff = self.nep.cutoff

    @classmethod
    def read(cls, path, species=None) -> "NEPForceField":
        """The NEP of ``path``; ``species``, when given, must be the file's elements in its order."""
        try:
            model = read_nep(Path(path))
        except NEPError as exc:
            raise MDSetupError(str(exc)) from exc
        ff = cls(model)
        if species is not None and tuple(species) != ff.species:
            raise MDSetupError(f"{path} is a NEP for {', '.join(ff.species)} (in that type order), "
                               f"not for the species {', '.join(species)} asked for")
        return ff

    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on a full pair list (module docstring)."""
        xp = xp or array_module(d)
        if xp is np:
            return evaluate_compiled(self.nep, types, i, j, d)
        return evaluate_fused(self.nep, types, i, j, d, xp=xp)


def _force_field(path_or_model) -> NEPForceField:
    if isinstance(path_or_model, NEPForceField):
        return path_or_model
    if isinstance(path_or_model, NEPModel):
        return NEPForceField(path_or_model)
    if isinstance(path_or_model, (str, Path)):
        return NEPForceField.read(path_or_model)
    raise MDSetupError(f"NEPCalculator takes a nep.txt path, a NEPModel or a NEPForceField, got {type(path_or_model)}")


class NEPCalculator(MDCalculator):
    """ASE calculator of a NEP: ``energy``, ``energies``, ``forces``, ``stress``, ``stresses`` (ASE units
    and sign) through md_gpu's neighbour list and force code (NumPy)."""

    def __init__(self, path_or_model, **kwargs):
        super().__init__(_force_field(path_or_model), **kwargs)
