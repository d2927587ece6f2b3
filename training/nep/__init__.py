"""GPUMD's neuroevolution potential (NEP3, NEP4, optional ZBL): the model, its file format and its evaluation.

Data flow: ``nep.txt`` --:func:`read_nep`--> :class:`NEPModel` (parameters and sizes)
--:class:`NEPEvaluator`--> ``evaluate(types, i, j, d)``: site energies and dE/dd per pair of a full pair
list (:mod:`.model`); :func:`write_nep` writes a model back, :func:`random_nep` makes a seeded random
one (tests, benchmarks, the fit's start). File and model errors are :class:`NEPError`
(:mod:`.errors`). The same evaluation as one fused kernel per atom (:mod:`.fused`; one source for CUDA
and, through :mod:`.host_kernel`, for the CPU with OpenMP): :func:`evaluate_compiled` (CPU, falls back
to the array code) and :func:`evaluate_fused` (CuPy); both check their first result against the array
code (:class:`KernelMismatch`).

This package is the NEP that the MD engine runs (``md_gpu.forcefields.nep`` wraps it) and that
``training.nep_fit`` fits: it imports ``common`` and itself only (an import contract in pyproject.toml),
as ``training.mtp`` does for the MTP.
"""
from .errors import NEPError, NEPFileError
from .fused import KernelMismatch
from .fused import evaluate as evaluate_fused
from .host_kernel import evaluate as evaluate_compiled
from .model import NEPEvaluator, PairGeometry, PairTerms, harmonic_tables
from .nep_file import COVALENT_RADIUS, NEPModel, random_nep, read_nep, write_nep

__all__ = ["NEPModel", "NEPEvaluator", "PairGeometry", "PairTerms", "harmonic_tables", "read_nep", "write_nep",
           "random_nep", "COVALENT_RADIUS", "NEPError", "NEPFileError", "KernelMismatch", "evaluate_compiled",
           "evaluate_fused"]
