"""The CPU target of the fused MTP kernel (training.mtp.host_kernel) against the array code of MTP.evaluate.

The host build is compiled from ``fused.KERNEL_BODY`` (the source of the CUDA kernel) with OpenMP into the
cache of ``common.native``.  Checked, to 1e-10 relative: site energies, dE/dd, forces, virial and per-atom
virials (the MD heat current's) on MLIP's level 2-20 templates with three species and random
coefficients, on MLIP's trained potentials and on a potential fitted to each embedded case's interface
data; the result does not depend on the number of OpenMP threads (bit for bit).  A fault planted in the
kernel source (one term of the reverse pass dropped) is caught by the same comparison and by the run-time
self-check.  Without a compiler, or with ``MULTISCALE_CPU_KERNELS=numpy``, the array code runs (one warning).
"""
import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import common.native as native
from kernel_checks import (assert_results_close, assert_the_switch_runs_the_array_code, one_compiler_warning,
                           runs_by_openmp_threads)
from training.mtp import MTP, MTPCalculator, fused, host_kernel, read_cfg
from training.mtp.neighbors import array_forces_and_virial, array_neighbor_pairs, forces_and_virial

ROOT = Path(__file__).parents[1]
MLIP = ROOT / "tests" / "data" / "mlip"
CASES = ROOT / "cases"
RTOL = 1e-10

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler (g++) for the CPU kernels")


def _structure(n_species: int, seed: int, *, shear: bool = True):
    """A rattled, sheared 32-atom fcc cell with random types 0..S-1 (every species present)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2))
    if shear:
        atoms.set_cell(atoms.cell.array @ [[1.0, 0.0, 0.0], [0.05, 1.0, 0.0], [0.03, -0.04, 1.0]], scale_atoms=True)
    atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
    types = rng.permutation(np.arange(len(atoms)) % n_species).astype(np.int64)
    return atoms, types


def _random_potential(level: int, n_species: int, seed: int) -> MTP:
    mtp = MTP.untrained(level, n_species, min_dist=1.5, max_dist=5.0, seed=seed)
    rng = np.random.default_rng(seed + 100)
    mtp.moment_coeffs = rng.normal(0.0, 1.0, mtp.basis_size) / np.arange(1, mtp.basis_size + 1)
    mtp.species_coeffs = rng.normal(-3.0, 1.0, n_species)
    return mtp


def assert_kernel_equals_array_code(mtp, atoms, types, *, evaluate=host_kernel.evaluate):
    """Site energies, dE/dd, forces, virial and per-atom virials of ``evaluate`` equal the array code's
    (``MTP.evaluate`` on NumPy, ``array_forces_and_virial``) to RTOL of each quantity's largest entry
    (for the sums forces and virials: or of their largest term, |dE/dd| and cutoff |dE/dd|)."""
    i, j, d = array_neighbor_pairs(atoms, mtp.cutoff)
    ref_e, ref_g = mtp.evaluate(types, i, j, d, xp=np)
    ref = array_forces_and_virial(i, j, d, ref_g, len(atoms), np)
    k_e, k_g = evaluate(mtp, types, i, j, d)
    got = forces_and_virial(i, j, d, k_g, len(atoms), np)
    assert_results_close((k_e, k_g, *got), (ref_e, ref_g, *ref), mtp.cutoff, RTOL)


@needs_compiler
@pytest.mark.parametrize("level", range(2, 21, 2))
def test_mlip_templates_with_three_species_equal_the_array_code(level):
    mtp = _random_potential(level, 3, seed=level)
    atoms, types = _structure(3, seed=level)
    assert host_kernel.available(mtp)
    assert_kernel_equals_array_code(mtp, atoms, types)


@needs_compiler
@pytest.mark.parametrize("system, level", [("cubic", 2), ("cubic", 16), ("cubic", 20), ("multi", 10)])
def test_mlip_trained_potentials_equal_the_array_code_and_mlip(system, level):
    """MLIP-2's own potentials: the kernel equals the array code, and the calculator (compiled neighbour
    list, kernel, scatter) gives MLIP-2's stored energies, forces and PlusStress."""
    mtp = MTP.read(MLIP / system / f"pot_{level:02d}.mtp")
    frames = read_cfg(MLIP / system / f"efs_{level:02d}.cfg.gz")[::250]
    for atoms in frames:
        types = np.asarray(atoms.arrays["mlip_type"], dtype=np.int64)
        assert_kernel_equals_array_code(mtp, atoms, types)
        ours = atoms.copy()
        ours.calc = MTPCalculator(mtp)
        assert ours.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(ours.get_forces(), atoms.get_forces(), atol=2e-6)
        np.testing.assert_allclose(ours.get_stress(), atoms.get_stress(), atol=1e-6)


@pytest.fixture(scope="module", params=sorted(p.name for p in CASES.iterdir() if (p / "data").is_dir()))
def fitted_case_potential(request):
    """(MTP, interface frames): a level-8 MTP fitted (5 iterations) to every 40th interface frame of a case."""
    from training import datasets
    from training.fit import train_mtp

    path = CASES / request.param / "data" / "interface.extxyz.gz"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    frames = datasets.read(path)[::40]
    species = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    init = MTP.untrained(8, len(species), min_dist=1.0, max_dist=5.0, species=species, seed=0)
    mtp, _ = train_mtp(init, frames, max_iter=5, starts=1, start_iter=2, method="lm")
    return mtp, frames


@needs_compiler
def test_a_potential_fitted_to_each_embedded_case_equals_the_array_code(fitted_case_potential):
    from training.mtp.calculator import atom_types

    mtp, frames = fitted_case_potential
    assert mtp.species_count >= 2 and np.abs(mtp.moment_coeffs).max() > 0
    for atoms in frames[::3]:
        assert_kernel_equals_array_code(mtp, atoms, atom_types(mtp, atoms))


# ---------------------------------------------------------------- a planted fault is caught
DROPPED_TERM = ("        g[q[1]] += w * m[q[0]];\n", "        MTP_FAULT(g[q[1]] += w * m[q[0]]);\n")


@needs_compiler
def test_a_planted_fault_is_caught_by_the_comparison_and_by_the_self_check(monkeypatch):
    """A macro in the source drops one term of the reverse pass through the products; the comparison of
    these tests and the run-time self-check of ``fused.evaluate`` both stop it; with the macro defined to
    keep the term the same source passes both."""
    old, new = DROPPED_TERM
    assert fused.KERNEL_BODY.count(old) == 1

    def launcher_with(fault_macro):
        def launcher(source):
            return host_kernel.host_launcher(fault_macro + source.replace(old, new))
        return launcher

    def evaluate_with(fault_macro):
        def evaluate(mtp, types, i, j, d):
            return fused.evaluate(mtp, types, i, j, d, xp=np, launcher=launcher_with(fault_macro))
        return evaluate

    atoms, types = _structure(2, seed=1)
    keep, drop = "#define MTP_FAULT(x) x\n", "#define MTP_FAULT(x)\n"
    assert_kernel_equals_array_code(_random_potential(10, 2, seed=1), atoms, types, evaluate=evaluate_with(keep))
    with pytest.raises(fused.KernelMismatch, match="disagrees with the array code"):
        evaluate_with(drop)(_random_potential(10, 2, seed=1), types, *array_neighbor_pairs(atoms, 5.0))

    monkeypatch.setattr(fused, "verify", lambda *args, **kwargs: None)  # the faulty result itself
    with pytest.raises(AssertionError, match="dE/dd"):
        assert_kernel_equals_array_code(_random_potential(10, 2, seed=1), atoms, types, evaluate=evaluate_with(drop))


# ---------------------------------------------------------------- threads, switch and fallback
THREADS_SCRIPT = """
import json, sys
import numpy as np
from ase.build import bulk
from training.mtp import MTP, MTPCalculator
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
atoms.calc = MTPCalculator(MTP.read(sys.argv[1]))
print(json.dumps({"energies": atoms.get_potential_energies().tolist(), "forces": atoms.get_forces().tolist(),
                  "stresses": atoms.get_stresses().tolist()}))
"""


@needs_compiler
def test_one_and_two_openmp_threads_give_the_same_bits():
    runs = runs_by_openmp_threads(THREADS_SCRIPT, str(MLIP / "cubic" / "pot_10.mtp"))
    assert runs["1"] == runs["2"]


def test_the_switch_runs_the_array_code(monkeypatch):
    mtp = _random_potential(8, 2, seed=2)
    atoms, types = _structure(2, seed=2)
    reference = functools.partial(mtp.evaluate, xp=np)
    assert_the_switch_runs_the_array_code(monkeypatch, host_kernel, mtp, reference, types,
                                          *array_neighbor_pairs(atoms, mtp.cutoff))
    assert not fused.tables(mtp).verified  # no kernel ran


def test_without_a_compiler_the_array_code_runs_with_one_warning(no_compiler):
    mtp = _random_potential(6, 1, seed=3)
    atoms, types = _structure(1, seed=3)
    atoms.calc = MTPCalculator(mtp)
    energy = one_compiler_warning(atoms.get_potential_energy)
    i, j, d = array_neighbor_pairs(atoms, mtp.cutoff)
    assert energy == pytest.approx(mtp.evaluate(types, i, j, d, xp=np)[0].sum(), rel=1e-12)
    atoms.positions[0] += 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_forces()  # no second warning
    assert list(no_compiler.iterdir()) == []  # nothing built


def test_a_failed_compile_warns_with_the_compiler_error_and_falls_back(monkeypatch, tmp_path):
    if native.compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("MULTISCALE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_warned", set())
    with pytest.warns(RuntimeWarning, match="failed to build a CPU kernel.*error"):
        assert native.load_library('extern "C" void broken( { }') is None
    assert list(tmp_path.iterdir()) == []  # no partial library left in the cache


def test_the_cache_key_follows_source_flags_and_host(monkeypatch, tmp_path):
    cxx = native.compiler() or "c++"
    monkeypatch.setattr(native, "_compiler_version", lambda _: "g++ 12")
    monkeypatch.setenv("MULTISCALE_KERNEL_CACHE", str(tmp_path))
    base = native.library_path("int x;", cxx)
    assert base.parent == tmp_path and base.suffix == ".so"
    assert native.library_path("int y;", cxx) != base
    assert native.library_path("int x;", cxx, flags=("-O2",)) != base
    monkeypatch.setattr(native, "host_identity", lambda: "another CPU")
    assert native.library_path("int x;", cxx) != base


BUILD_SCRIPT = """
import sys
from common.native import build, compiler
print(build(sys.argv[1], compiler()))
"""


@needs_compiler
def test_ranks_compiling_the_same_kernel_at_once_all_load_a_complete_library(tmp_path):
    source = '#include <cmath>\nextern "C" double twice(double x) { return 2.0 * std::sqrt(x * x); }\n'
    env = {**os.environ, "MULTISCALE_KERNEL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, source], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(paths) == 1
    import ctypes

    library = ctypes.CDLL(paths.pop())
    library.twice.restype, library.twice.argtypes = ctypes.c_double, [ctypes.c_double]
    assert library.twice(-1.5) == 3.0
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".so"]  # no temporary files left


def test_a_home_cache_that_cannot_be_written_moves_to_the_temporary_folder(monkeypatch, tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.delenv("MULTISCALE_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # mkdir below a file fails
    assert native.cache_dir().name == f"multiscale-cpu-kernels-{os.getuid()}"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert native.cache_dir() == tmp_path / "cache" / "multiscale" / "cpu-kernels"
