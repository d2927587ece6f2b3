"""The fused MTP kernel's source (training.mtp.fused), built as C++ on the CPU, against the array code.

The CUDA kernel and this C++ build are one source (``MTP_HOST`` switches the grid for a loop), so its
arithmetic -- radial basis, moments, products, reverse pass, pair gradients, CSR bookkeeping -- is
checked here on any machine with a C++ compiler; ``test_mtp_model.py::test_cupy_matches_numpy`` checks
the CUDA build on a GPU.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from training.mtp import MTP, forces_and_virial, neighbor_pairs, read_cfg
from training.mtp import fused

DATA = Path(__file__).parent / "data" / "mlip"
CXX = shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def host_launcher(tmp_path_factory):
    """``launcher(source)`` for ``fused.evaluate``: the kernel source compiled as a C++ shared library."""
    if CXX is None:
        pytest.skip("no C++ compiler (g++) to build the kernel source for the CPU")
    built = {}

    def launcher(source):
        if source not in built:
            folder = tmp_path_factory.mktemp("mtp_kernel")
            (folder / "kernel.cpp").write_text("#define MTP_HOST 1\n#include <cmath>\nusing std::sqrt;\n" + source)
            subprocess.run([CXX, "-O1", "-shared", "-fPIC", "-o", str(folder / "kernel.so"),
                            str(folder / "kernel.cpp")], check=True, capture_output=True)
            function = ctypes.CDLL(str(folder / "kernel.so")).mtp_evaluate
            function.restype = None

            def launch(n_atoms, args):
                assert all(a.flags.c_contiguous for a in args)
                function(ctypes.c_longlong(n_atoms), *(a.ctypes.data_as(ctypes.c_void_p) for a in args))

            built[source] = launch
        return built[source]

    return launcher


def _shuffled_pairs(atoms, cutoff, seed=0):
    i, j, d = neighbor_pairs(atoms, cutoff)
    order = np.random.default_rng(seed).permutation(len(i))
    return i[order], j[order], d[order]


@pytest.mark.parametrize("system, level", [("cubic", "16"), ("multi", "10")])
def test_kernel_source_equals_the_array_code(host_launcher, system, level):
    """MLIP's level-16 single-species and level-10 three-species potentials: site energies, dE/dd,
    forces and virial of the kernel equal the array code's, with the pairs in random order."""
    mtp = MTP.read(DATA / system / f"pot_{level}.mtp")
    atoms = read_cfg(DATA / system / f"efs_{level}.cfg.gz")[5].repeat((2, 1, 1))
    types = np.asarray(atoms.arrays["mlip_type"], dtype=np.int64)
    i, j, d = _shuffled_pairs(atoms, mtp.cutoff)
    energies, de_dd = mtp.evaluate(types, i, j, d)
    k_energies, k_de_dd = fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)
    scale = np.abs(de_dd).max()
    np.testing.assert_allclose(k_energies, energies, rtol=0, atol=1e-10 * max(1.0, np.abs(energies).max()))
    np.testing.assert_allclose(k_de_dd, de_dd, rtol=0, atol=1e-10 * scale)
    forces, virial, _ = forces_and_virial(i, j, d, de_dd, len(atoms))
    k_forces, k_virial, _ = forces_and_virial(i, j, d, k_de_dd, len(atoms))
    np.testing.assert_allclose(k_forces, forces, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(k_virial, virial, rtol=0, atol=1e-9 * scale)


def test_kernel_source_on_the_largest_basis_with_far_pairs_and_a_lonely_atom(host_launcher):
    """Level 20 (the largest table), two species, random coefficients: equal to the array code; pairs
    beyond the cut-off add nothing and get zero gradient; an atom without pairs has its species energy."""
    mtp = MTP.untrained(20, 2, seed=3, min_dist=1.2, max_dist=4.5)
    mtp.moment_coeffs = np.random.default_rng(4).normal(scale=0.1, size=mtp.basis_size)
    mtp.species_coeffs = np.array([-1.5, -2.5])
    rng = np.random.default_rng(5)
    n = 9
    types = rng.integers(0, 2, size=n).astype(np.int64)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij"))
    keep = i != j
    i, j = i[keep], j[keep]
    d = rng.uniform(-3.0, 3.0, size=(len(i), 3))
    d[:5] *= 3.0  # a few pairs beyond max_dist
    energies, de_dd = mtp.evaluate(types, i, j, d)
    k_energies, k_de_dd = fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)
    np.testing.assert_allclose(k_energies, energies, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(k_de_dd, de_dd, rtol=1e-10, atol=1e-10 * np.abs(de_dd).max())
    far = np.linalg.norm(d, axis=1) >= mtp.max_dist
    assert far.any() and np.all(k_de_dd[far] == 0.0)
    assert k_energies[n - 1] == mtp.species_coeffs[types[n - 1]]


def test_kernel_tables_follow_coefficients_changed_in_place(host_launcher):
    """Fitting changes coefficients in place: the next call must use them (no stale copies)."""
    mtp = MTP.read(DATA / "cubic" / "pot_10.mtp")
    atoms = read_cfg(DATA / "cubic" / "efs_10.cfg.gz")[2]
    types = np.zeros(len(atoms), dtype=np.int64)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    before = fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)[0].sum()
    mtp.moment_coeffs = mtp.moment_coeffs * 1.5
    mtp.radial_coeffs *= 0.9
    after = fused.evaluate(mtp, types, i, j, d, xp=np, launcher=host_launcher)[0].sum()
    assert after != before
    assert after == pytest.approx(mtp.evaluate(types, i, j, d)[0].sum(), rel=1e-12)


def test_a_kernel_that_disagrees_with_the_array_code_is_stopped_on_its_first_result(host_launcher):
    mtp = MTP.read(DATA / "cubic" / "pot_10.mtp")
    atoms = read_cfg(DATA / "cubic" / "efs_10.cfg.gz")[2]
    types = np.zeros(len(atoms), dtype=np.int64)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)

    def off_by_1e6(source):  # a "miscompiled" kernel: gradients off by one part in a million
        launch = host_launcher(source)

        def run(n_atoms, args):
            launch(n_atoms, args)
            args[-1][:] *= 1.0 + 1e-6

        return run

    with pytest.raises(fused.KernelMismatch, match=r"disagrees with the array code.*1\.00e-06 in dE/dd"):
        fused.evaluate(mtp, types, i, j, d, xp=np, launcher=off_by_1e6)
