"""The fused MTP kernel's source (training.mtp.fused), built as C++ on the CPU, against the array code.

The CUDA kernel and this C++ build are one source (``MTP_HOST`` switches the grid for a loop), so its
arithmetic -- radial basis, moments, products, reverse pass, pair gradients, CSR bookkeeping -- is
checked here on any machine with a C++ compiler; ``test_mtp_model.py::test_cupy_matches_numpy`` checks
the CUDA build on a GPU.

The run-time self-check (``fused.verify``) is tested with faults planted into the source here (the
product source has no fault switch): a kernel that skips the atoms of the second thread block, one whose
second block drops the species coefficient, and one whose branch for a species pair writes zero.  Each
passes a check of atoms 0-63 (the old check) and is stopped by the new one; the correct kernel passes.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common import atom_kernels
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


# ---------------------------------------------------------------- the run-time self-check, with planted faults
T = fused.THREADS_PER_BLOCK
HOST_LOOP = "for (long long a = 0; a < n_atoms; ++a)\n"
FAULTS = {
    # the threads of block 1 never run: their outputs stay as allocated
    "skips block 1": (HOST_LOOP, HOST_LOOP + f"        if (a / {T} != 1)\n"),
    # block 1 computes everything but the species coefficient: outputs written, energies wrong
    "block 1 drops the species coefficient": ("double e = species_coeffs[types[a]];",
                                              f"double e = a / {T} == 1 ? 0.0 : species_coeffs[types[a]];"),
    # the radial functions of species pair 0-1 (pair type t_i S + t_j = 1) are zero: written, wrong
    "species pair 0-1 writes zero": ("    const double gap = MAX_DIST - r;\n",
                                     "    if (pt == 1) { for (int mu = 0; mu < NR; ++mu) f[mu] = df[mu] = 0.0; return; }\n"
                                     "    const double gap = MAX_DIST - r;\n"),
}


def _faulty(host_launcher, fault, captured):
    """A launcher building the kernel source with ``fault`` planted (None: the correct source); it keeps
    the outputs of its last launch in ``captured``."""
    def launcher(source):
        if fault is not None:
            old, new = FAULTS[fault]
            assert source.count(old) == 1, fault
            source = source.replace(old, new)
        launch = host_launcher(source)

        def run(n_atoms, args):
            launch(n_atoms, args)
            captured["energies"], captured["grad"] = args[-2].copy(), args[-1].copy()

        return run

    return launcher


@pytest.fixture(scope="module")
def two_species_slab():
    """(mtp, types, i, j, d): 320 fcc atoms (three thread blocks, the last one partial) sorted along x,
    type 1 in a band that no atom among 0-63 sees within the cut-off, type 0 elsewhere; pairs sorted by
    centre. Potential: MLIP's three-species level-10 MTP."""
    from ase.build import bulk

    mtp = MTP.read(DATA / "multi" / "pot_10.mtp")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((10, 2, 4))
    atoms = atoms[np.argsort(atoms.positions[:, 0], kind="stable")]
    atoms.rattle(0.05, seed=7)
    x = atoms.positions[:, 0]
    types = np.where((x > 18.0) & (x < 30.5), 1, 0).astype(np.int64)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    order = np.argsort(i, kind="stable")
    i, j, d = i[order], j[order], d[order]
    assert len(atoms) == 320 and not np.any(types[j[i < 64]] == 1)  # atoms 0-63 never see type 1
    assert np.any(types[:T] == 0) and np.any(types[T:2 * T] == 1) and np.any((types[i] == 0) & (types[j] == 1))
    return mtp, types, i, j, d


def _reference_on_first_atoms(mtp, types, i, j, d, captured, m=64):
    """Largest difference of the captured kernel outputs from the array code on atoms 0..m-1 (what the
    old check compared)."""
    energies, de_dd = mtp.evaluate(types, i, j, d)
    mask = i < m
    return max(np.abs(captured["energies"][:m] - energies[:m]).max(), np.abs(captured["grad"][mask] - de_dd[mask]).max())


@pytest.mark.parametrize("sampled", [False, True], ids=["every atom", "sampled atoms"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_self_check_stops_a_planted_fault_that_atoms_0_to_63_miss(host_launcher, two_species_slab, fault,
                                                                      sampled, monkeypatch):
    """Every atom of a small launch is checked; sampled (forced here: a launch of more than
    VERIFY_ALL_ATOMS atoms), the first and a moving lane of every block and an atom of every species pair."""
    if sampled:
        monkeypatch.setattr(atom_kernels, "VERIFY_ALL_ATOMS", 0)
    mtp, types, i, j, d = two_species_slab
    mtp = MTP(mtp.fields())  # its own kernel tables: a fresh check
    captured: dict = {}
    with pytest.raises(fused.KernelMismatch, match="unwritten" if fault == "skips block 1" else "disagrees"):
        fused.evaluate(mtp, types, i, j, d, xp=np, launcher=_faulty(host_launcher, fault, captured))
    # the old check (atoms 0-63 of the same result) would have let it through; without the NaN fill the
    # unwritten entries would hold whatever the memory held
    assert _reference_on_first_atoms(mtp, types, i, j, d, captured) < 1e-9
    if fault == "skips block 1":
        assert np.isnan(captured["energies"][T:2 * T]).all() and np.isfinite(captured["energies"][:T]).all()


@pytest.mark.parametrize("sampled", [False, True], ids=["every atom", "sampled atoms"])
def test_the_correct_kernel_passes_the_self_check(host_launcher, two_species_slab, sampled, monkeypatch):
    if sampled:
        monkeypatch.setattr(atom_kernels, "VERIFY_ALL_ATOMS", 0)
    mtp, types, i, j, d = two_species_slab
    mtp = MTP(mtp.fields())
    captured: dict = {}
    k_energies, k_de_dd = fused.evaluate(mtp, types, i, j, d, xp=np, launcher=_faulty(host_launcher, None, captured))
    energies, de_dd = mtp.evaluate(types, i, j, d)
    np.testing.assert_allclose(k_energies, energies, rtol=0, atol=1e-10 * np.abs(energies).max())
    np.testing.assert_allclose(k_de_dd, de_dd, rtol=0, atol=1e-10 * np.abs(de_dd).max())


def test_sampled_atoms_cover_every_block_lane_species_and_species_pair(two_species_slab, monkeypatch):
    monkeypatch.setattr(atom_kernels, "VERIFY_ALL_ATOMS", 0)
    mtp, types, i, j, d = two_species_slab
    sample = atom_kernels.sample_atoms(types, i, j, mtp.species_count, np, threads_per_block=T)
    n = len(types)
    assert set(range(0, n, T)) | {n - 1} <= set(sample.tolist())
    assert {int(a) // T for a in sample} == set(range((n + T - 1) // T))
    assert set(types[sample]) == set(types)
    pairs = {(types[a], types[b]) for a, b in zip(i, j)}
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for ta, tb in pairs:  # an atom of every species pair present is sampled
        assert any(types[a] == ta and np.any(types[j[i == a]] == tb) for a in sample), (ta, tb)
    lanes = {(1 + atom_kernels.VERIFY_LANE_STRIDE * b) % T for b in range(T)}
    assert lanes == set(range(T))  # over T blocks the moving lane visits every lane
    monkeypatch.setattr(atom_kernels, "VERIFY_ALL_ATOMS", 1024)
    assert atom_kernels.sample_atoms(types, i, j, mtp.species_count, np, threads_per_block=T).tolist() == list(range(n))


def test_the_species_probe_catches_a_species_pair_the_run_has_not_met(host_launcher, two_species_slab, monkeypatch):
    """A kernel whose species-pair-0-1 branch is wrong gives the right result while only type 0 is present;
    the first launch's check still stops it, on the species probe (every species pair). A right kernel is
    checked once (the run's configuration and the probe) and not again when type-1 atoms come in."""
    mtp, types, i, j, d = two_species_slab
    mtp = MTP(mtp.fields())
    one_species = np.zeros_like(types)
    faulty = _faulty(host_launcher, "species pair 0-1 writes zero", {})
    with pytest.raises(fused.KernelMismatch, match="disagrees"):
        fused.evaluate(mtp, one_species, i, j, d, xp=np, launcher=faulty)
    checks = []
    real_verify = fused.verify
    monkeypatch.setattr(fused, "verify", lambda *a, **k: (checks.append(len(a[1])), real_verify(*a, **k))[1])
    right = MTP(mtp.fields())
    launcher = _faulty(host_launcher, None, {})
    k_energies, _ = fused.evaluate(right, one_species, i, j, d, xp=np, launcher=launcher)
    np.testing.assert_allclose(k_energies, right.evaluate(one_species, i, j, d)[0], rtol=1e-12)
    s = right.species_count
    assert checks == [len(types), s + 2 * s * s]  # the run's atoms, then the probe's
    k_energies, _ = fused.evaluate(right, types, i, j, d, xp=np, launcher=launcher)
    np.testing.assert_allclose(k_energies, right.evaluate(types, i, j, d)[0], rtol=1e-12)
    assert len(checks) == 2  # checked once


def test_the_species_probe_holds_every_species_pair_inside_the_radii():
    types, i, j, d = atom_kernels.species_probe(3, (2.0, 4.5), np)
    assert {(int(types[a]), int(types[b])) for a, b in zip(i, j)} == {(a, b) for a in range(3) for b in range(3)}
    r = np.linalg.norm(d, axis=1)
    assert r.min() >= 2.0 and r.max() <= 4.5 and np.all(np.diff(i) >= 0)


# ---------------------------------------------------------------- provenance of the runs this kernel serves
def test_backend_provenance_names_backend_device_versions_and_precision():
    """md_gpu.backend.backend_provenance: JSON-able, on NumPy the CPU; CuPy's fields where a GPU answers."""
    import json

    from md_gpu.backend import backend_provenance, cupy_usable

    info = backend_provenance(np)
    assert info["backend"] == "numpy" and info["precision"] == "float64" and info["device"]
    assert info["numpy"] == np.__version__ and info["cuda_runtime"] is None
    assert json.loads(json.dumps(info)) == info
    assert backend_provenance(np, precision="float32")["precision"] == "float32"
    if cupy_usable()[0]:
        import cupy

        gpu = backend_provenance(cupy)
        assert gpu["backend"] == "cupy" and gpu["cupy"] == cupy.__version__
        assert gpu["cuda_runtime"].count(".") == 1 and "unknown" not in gpu["device"]
