"""``MTP.evaluate`` on the CPU as the fused kernel of :mod:`training.mtp.fused`, compiled for the host.

One kernel source, two targets: the CUDA kernel and this host build are the same ``KERNEL_BODY``;
``MTP_HOST`` swaps the grid of one thread per atom for an OpenMP loop over the atoms (threads follow
``OMP_NUM_THREADS``).  The library is built on first use into the per-user cache of
:mod:`common.native` (one per potential basis: the table sizes are compiled in) and loaded with
``ctypes`` (:func:`common.atom_kernels.host_launcher`, the same launcher as the NEP kernel's).

:func:`evaluate` is the default CPU path of the calculator, ``calc-efs`` and MD; it falls back
to the array code of :meth:`MTP.evaluate` (the reference the tests compare against) when
``MULTISCALE_CPU_KERNELS=numpy`` or no library can be built (one warning, :mod:`common.native`).  As on
the GPU, the first result of each potential is checked against the array code, with a probe of every
species pair (``fused.verify``), so a miscompiled kernel stops with ``fused.KernelMismatch``.

:func:`grade_rows` gives the rows of the extrapolation grade (dE_i/dθ of the radial coefficients and the
basis values, :mod:`training.mtp.energy_rows`) from the build of the same source with ``MTP_ROWS``
defined; grading (``ActiveSet.neighbourhood_grades``, ``frame_grades``, the MD hook) uses it on the CPU.
"""
from __future__ import annotations

import numpy as np

from common import atom_kernels

from . import fused

HOST_PREAMBLE = "#define MTP_HOST 1\n#include <cmath>\nusing std::sqrt;\n"
ROWS_PREAMBLE = "#define MTP_ROWS 1\n"  # the build that also writes each atom's grade row (grade_rows)


def host_launcher(kernel_source: str):
    """``launch(n_atoms, args)`` for ``fused.evaluate``: the host build (``HOST_PREAMBLE``: ``MTP_HOST``
    defined) of a kernel source of :class:`fused.KernelTables`, or None when it cannot be loaded
    (:func:`common.atom_kernels.host_launcher`: the same object for the same library)."""
    return atom_kernels.host_launcher(HOST_PREAMBLE + kernel_source, "mtp_evaluate")


def available(mtp) -> bool:
    """Whether the compiled kernel of ``mtp``'s basis loads (:func:`evaluate` uses it)."""
    return host_launcher(fused.tables(mtp).source) is not None


def evaluate(mtp, types, i, j, d):
    """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on the CPU: ``MTP.evaluate``'s contract (full
    pair list i, j [p], d [p, 3] Å = r_j + shift - r_i, types [n]), by the compiled kernel when it
    loads, else by the array code."""
    _, types, i, j, d = mtp._inputs(types, i, j, d, np)
    if not available(mtp):
        return mtp._evaluate_arrays(types, i, j, d, np)
    return fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)


def grade_rows(mtp, types, i, j, d):
    """``(dE_i/dθ [n, S*S*M*X], basis values B [n, K])``: the contract of
    :func:`training.mtp.energy_rows.radial_rows` (NumPy; full pair list i, j [p], d [p, 3] Å, types [n]),
    by the host build of the kernel with ``MTP_ROWS`` (the same source; in the pass over the pairs that
    forms dE/dd each atom adds (Σ_l G[μ][l] A_l) Q_x(r) to its row, and the basis values are its moments),
    or None when it cannot be loaded.  The energies and pair gradients of the same launch are checked
    against the array code the first time for each potential, with the species probe (``fused.verify``), so
    a miscompiled build stops with ``fused.KernelMismatch``."""
    kt = fused.tables(mtp)
    launch = atom_kernels.host_launcher(ROWS_PREAMBLE + HOST_PREAMBLE + kt.source, "mtp_evaluate")
    if launch is None:
        return None
    _, types, i, j, d = mtp._inputs(types, i, j, d, np)
    s = mtp.species_count
    radial_size = s * s * mtp.radial_funcs_count * mtp.radial_basis_size
    width = radial_size + len(kt.mapping)
    pair_type_count = np.array([s * s], dtype=np.int64)
    launched = []  # the rows of each launch: the caller's, then (at the first call) the species probe's

    def run(n, args):
        launched.append(np.empty((n, width)))
        launch(n, (*args, pair_type_count, launched[-1]))

    atom_kernels.evaluate_checked(run, "rows", kt.verified, types, i, j, d, s, kt.arrays(mtp, np), np,
                                  lambda *result: fused.verify(mtp, *result, np), probe_radii=fused.probe_radii(mtp))
    rows = launched[0] if len(types) else np.empty((0, width))
    return rows[:, :radial_size], rows[:, radial_size:]
