"""The fused NEP kernel (training.nep.fused, built for the CPU by training.nep.host_kernel) against the array code.

The host build is ``fused.KERNEL_BODY`` (the CUDA kernel's source) compiled with OpenMP into the cache of
``common.native``.  Checked, to 1e-10 relative: site energies, dE/dd, forces, virial and per-atom virials
(the heat current's) of random NEP3 and NEP4 models with one, two and three species (also typewise
cut-offs, radial-only, 5-body only, universal / typewise / flexible ZBL) on a periodic bulk cell, a
triclinic cell and a sheet, with the pairs in random order (the kernel sorts them by centre).  A fault
planted in the kernel source is caught by the run-time self-check (``fused.KernelMismatch``) and, with the
self-check off, by the comparison of these tests; with ``MULTISCALE_CPU_KERNELS=numpy`` the array code runs.
The NEPForceField and NEPCalculator run the kernel by default.  The CUDA build is checked on a GPU
(marked ``gpu``).
"""
import functools

import numpy as np
import pytest
from ase.build import bulk, graphene

import common.native as native
from kernel_checks import (assert_results_close, assert_the_switch_runs_the_array_code, one_compiler_warning,
                           runs_by_openmp_threads)
from md_gpu.forcefields.base import forces_and_virial
from md_gpu.forcefields.nep import NEPCalculator, NEPForceField
from md_gpu.neighbors import build_pairs
from training.nep import NEPEvaluator, random_nep
from training.nep import fused, host_kernel

RTOL = 1e-10
SPECIES = ("C", "B", "N")

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler (g++) for the CPU kernels")


MODELS = {
    "nep3": dict(version=3),
    "nep4": dict(version=4),
    "nep3_l2": dict(version=3, l_max=(2, 0, 0), n_max=(3, 5), basis_size=(4, 9), neurons=7),
    "nep4_l6_5body": dict(version=4, l_max=(6, 0, 1), n_max=(6, 3), basis_size=(8, 5)),
    "nep4_radial_only": dict(version=4, l_max=(0, 0, 0)),
    "nep4_typewise_rc": dict(version=4, typewise_rc=[[4.2, 3.7], [3.6, 3.0], [4.6, 3.3]]),
    "nep4_zbl": dict(version=4, zbl=(0.9, 1.6)),
    "nep3_zbl_typewise": dict(version=3, zbl=(0.9, 1.6), zbl_factor=0.65),
    "nep4_zbl_flexible": dict(version=4, zbl=(0.0, 0.0)),
}


def _model(name: str, n_species: int, seed: int = 1):
    kw = dict(MODELS[name])
    if "typewise_rc" in kw:
        kw["typewise_rc"] = kw["typewise_rc"][:n_species]
    else:
        kw["rc"] = (4.2, 3.7)
    return random_nep(SPECIES[:n_species], seed=seed, **kw)


def _structure(kind: str, n_species: int, seed: int = 3):
    """(atoms, types): a rattled cell with random species 0..S-1; bulk = periodic diamond, triclinic =
    a sheared diamond cell, sheet = graphene with vacuum (pbc T T F).  Rattled by 0.15 Å so that some
    pairs come within the ZBL range."""
    rng = np.random.default_rng(seed)
    if kind == "sheet":
        atoms = graphene(a=2.46, vacuum=6.0).repeat((3, 3, 1))
        atoms.pbc = (True, True, False)
    else:
        atoms = bulk("C", "diamond", a=3.57, cubic=True).repeat((2, 1, 1))
        if kind == "triclinic":
            atoms.set_cell(atoms.cell @ np.array([[1.0, 0.06, 0.02], [0.0, 1.0, 0.08], [0.0, 0.0, 1.04]]),
                           scale_atoms=True)
    atoms.rattle(0.15, seed=seed)
    types = rng.permutation(np.arange(len(atoms)) % n_species).astype(np.int64)
    return atoms, types


def _pairs(atoms, cutoff, seed=0):
    """Full pair list i, j [p], d [p, 3] in random order."""
    i, j, shifts = build_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    d = atoms.positions[j] + shifts @ atoms.cell.array - atoms.positions[i]
    order = np.random.default_rng(seed).permutation(len(i))
    return i[order], j[order], d[order]


def assert_kernel_equals_array_code(evaluator, atoms, types, *, evaluate=host_kernel.evaluate):
    """Site energies, dE/dd, forces, virial and per-atom virials of ``evaluate`` equal the array code's
    to RTOL of each quantity's largest entry (sums: or of their largest term, |dE/dd| and cutoff |dE/dd|)."""
    i, j, d = _pairs(atoms, evaluator.cutoff)
    ref_e, ref_g = evaluator.evaluate(types, i, j, d, xp=np)
    ref = forces_and_virial(i, j, d, ref_g, len(atoms), np, per_atom=True)
    k_e, k_g = evaluate(evaluator, types, i, j, d)
    got = forces_and_virial(i, j, d, k_g, len(atoms), np, per_atom=True)
    assert_results_close((k_e, k_g, *got), (ref_e, ref_g, *ref), evaluator.cutoff, RTOL)
    assert np.abs(ref_e).max() > 1e-3  # the comparison is not between zeros
    return i, j, d


@needs_compiler
@pytest.mark.parametrize("kind", ["bulk", "triclinic", "sheet"])
@pytest.mark.parametrize("n_species", [1, 2, 3])
@pytest.mark.parametrize("name", ["nep3", "nep4"])
def test_nep3_and_nep4_equal_the_array_code(name, n_species, kind):
    evaluator = NEPEvaluator(_model(name, n_species, seed=n_species))
    assert host_kernel.available(evaluator)
    assert_kernel_equals_array_code(evaluator, *_structure(kind, n_species, seed=n_species))


@needs_compiler
@pytest.mark.parametrize("name", [k for k in MODELS if k not in ("nep3", "nep4")])
def test_model_variants_equal_the_array_code(name):
    """Other sizes, radial-only, 5-body without 4-body, typewise cut-offs and the three ZBL kinds, three
    species on the triclinic cell; the ZBL models see pairs inside the ZBL switch."""
    evaluator = NEPEvaluator(_model(name, 3, seed=5))
    i, j, d = assert_kernel_equals_array_code(evaluator, *_structure("triclinic", 3, seed=5))
    if evaluator.model.zbl is not None:
        assert np.sqrt((d * d).sum(axis=1)).min() < 1.5


@needs_compiler
def test_atoms_without_neighbours_and_a_launch_without_pairs():
    """A lone atom far from a dimer (its site energy is the network at q = 0), and a lone atom alone."""
    evaluator = NEPEvaluator(_model("nep4", 2, seed=10))
    positions = np.array([[0.0, 0.0, 0.0], [1.4, 0.2, 0.1], [9.0, 9.0, 9.0]])
    i, j = np.array([0, 1]), np.array([1, 0])
    d = np.array([positions[1] - positions[0], positions[0] - positions[1]])
    types = np.array([0, 1, 1])
    ref_e, ref_g = evaluator.evaluate(types, i, j, d, xp=np)
    k_e, k_g = host_kernel.evaluate(evaluator, types, i, j, d)
    np.testing.assert_allclose(k_e, ref_e, rtol=0, atol=RTOL * np.abs(ref_e).max())
    np.testing.assert_allclose(k_g, ref_g, rtol=0, atol=RTOL * np.abs(ref_g).max())
    empty = np.zeros(0, dtype=np.int64)
    k_e, k_g = host_kernel.evaluate(evaluator, types[2:], empty, empty, np.zeros((0, 3)))
    assert k_g.shape == (0, 3) and k_e[0] == pytest.approx(ref_e[2], abs=1e-12)


# ---------------------------------------------------------------- the calculator's default path
@needs_compiler
def test_force_field_and_calculator_run_the_kernel_and_give_the_array_code_numbers(monkeypatch):
    model = _model("nep4", 2, seed=7)
    atoms, types = _structure("triclinic", 2, seed=7)
    atoms.symbols = [SPECIES[t] for t in types]
    ff = NEPForceField(model)
    atoms.calc = NEPCalculator(ff)
    compiled = {k: atoms.calc.get_property(k, atoms) for k in ("energies", "forces", "stress", "stresses")}
    assert fused.tables(ff.nep).verified  # the kernel ran (and passed its self-check)
    monkeypatch.setenv(native.ENV_VAR, "numpy")
    reference = atoms.copy()
    reference.calc = NEPCalculator(model)
    for key, value in compiled.items():
        ref = reference.calc.get_property(key, reference)
        np.testing.assert_allclose(value, ref, rtol=0, atol=RTOL * max(1.0, np.abs(ref).max()), err_msg=key)


def test_the_switch_runs_the_array_code(monkeypatch):
    evaluator = NEPEvaluator(_model("nep4", 2, seed=2))
    atoms, types = _structure("bulk", 2, seed=2)
    reference = functools.partial(evaluator.evaluate, xp=np)
    assert_the_switch_runs_the_array_code(monkeypatch, host_kernel, evaluator, reference, types,
                                          *_pairs(atoms, evaluator.cutoff))
    assert not fused.tables(evaluator).verified  # no kernel ran


def test_without_a_compiler_the_array_code_runs_with_one_warning(no_compiler):
    model = _model("nep3", 2, seed=11)
    atoms, types = _structure("bulk", 2, seed=11)
    atoms.symbols = [SPECIES[t] for t in types]
    atoms.calc = NEPCalculator(model)
    energy = one_compiler_warning(atoms.get_potential_energy)
    evaluator = NEPEvaluator(model)
    assert energy == pytest.approx(evaluator.evaluate(types, *_pairs(atoms, evaluator.cutoff), xp=np)[0].sum(),
                                   rel=1e-12)
    assert list(no_compiler.iterdir()) == []  # nothing built


# ---------------------------------------------------------------- planted faults
def _evaluate_with(old: str, new: str):
    """``evaluate(evaluator, types, i, j, d)`` by the host build of the kernel source with ``old`` replaced
    by ``new`` (each must occur once)."""
    assert fused.KERNEL_BODY.count(old) == 1

    def launcher(source):
        return host_kernel.host_launcher(source.replace(old, new))

    def evaluate(evaluator, types, i, j, d):
        return fused.evaluate(evaluator, types, i, j, d, xp=np, launcher=launcher)

    return evaluate


TANGENTIAL = "gx = (dux - radial * ux) / r;"  # the x component of (dU/du - (dU/du . u) u) / r
FIVE_BODY = "dn[0] += fq * (4 * C5B0"  # dU/ds_{n10} of the 5-body invariant


@needs_compiler
@pytest.mark.parametrize("old, new", [(TANGENTIAL, "gx = (dux + radial * ux) / r;"),
                                      (FIVE_BODY, "dn[0] -= fq * (4 * C5B0")])
def test_a_planted_fault_is_caught_by_the_self_check_and_by_the_comparison(monkeypatch, old, new):
    """A sign flipped in the angular pull-back (or the 5-body term) gives wrong forces with the right energies:
    the self-check stops the first call; with the self-check off, the comparison of these tests fails."""
    evaluator = NEPEvaluator(_model("nep4", 2, seed=4))
    atoms, types = _structure("triclinic", 2, seed=4)
    assert_kernel_equals_array_code(evaluator, atoms, types, evaluate=_evaluate_with(old, old))
    with pytest.raises(fused.KernelMismatch, match=r"disagrees with the array code.*in dE/dd"):
        _evaluate_with(old, new)(evaluator, types, *_pairs(atoms, evaluator.cutoff))
    monkeypatch.setattr(fused, "verify", lambda *args, **kwargs: None)  # the faulty result itself
    with pytest.raises(AssertionError, match="dE/dd"):
        assert_kernel_equals_array_code(evaluator, atoms, types, evaluate=_evaluate_with(old, new))


@needs_compiler
def test_atoms_the_kernel_skips_are_caught_as_unwritten():
    evaluator = NEPEvaluator(_model("nep3", 1, seed=6))
    atoms, types = _structure("bulk", 1, seed=6)
    skip_odd_host = _evaluate_with("for (long long a = 0; a < n_atoms; ++a) NEP_CALL(a);",
                                   "for (long long a = 0; a < n_atoms; a += 2) NEP_CALL(a);")
    with pytest.raises(fused.KernelMismatch, match=r"left 8 of 16 site energies .* unwritten"):
        skip_odd_host(evaluator, types, *_pairs(atoms, evaluator.cutoff))


@needs_compiler
def test_a_fault_beyond_the_first_thread_block_is_caught_on_a_large_launch():
    """1350 atoms (more than the all-atoms check): the sampled self-check sees a fault in the site
    energies of the atoms of the second and later thread blocks."""
    evaluator = NEPEvaluator(_model("nep4", 2, seed=8))
    atoms = graphene(a=2.46, vacuum=6.0).repeat((25, 27, 1))
    atoms.pbc = (True, True, False)
    atoms.rattle(0.05, seed=8)
    types = np.arange(len(atoms)) % 2
    assert len(atoms) > 1024
    fault = _evaluate_with("energies[a] = (e - b1[0]) + ezbl;",
                           "energies[a] = (e - b1[0]) + ezbl + (a >= 128 ? 1e-6 : 0.0);")
    with pytest.raises(fused.KernelMismatch, match="in site energies"):
        fault(evaluator, types, *_pairs(atoms, evaluator.cutoff))


# ---------------------------------------------------------------- threads
THREADS_SCRIPT = """
import json, sys
import numpy as np
from ase.build import bulk
from md_gpu.forcefields.nep import NEPCalculator
from training.nep import random_nep
atoms = bulk("C", "diamond", a=3.57, cubic=True).repeat((3, 3, 3))
atoms.rattle(0.05, seed=0)
atoms.symbols[::3] = "B"
atoms.calc = NEPCalculator(random_nep(("C", "B"), version=4, seed=0, rc=(4.2, 3.7)))
print(json.dumps({"energies": atoms.get_potential_energies().tolist(), "forces": atoms.get_forces().tolist(),
                  "stresses": atoms.get_stresses().tolist()}))
"""


@needs_compiler
def test_one_and_two_openmp_threads_give_the_same_bits():
    runs = runs_by_openmp_threads(THREADS_SCRIPT)
    assert runs["1"] == runs["2"]


# ---------------------------------------------------------------- the CUDA build
@pytest.mark.gpu
def test_the_cuda_build_equals_the_array_code():
    cupy = pytest.importorskip("cupy")
    from md_gpu.backend import cupy_usable

    if not cupy_usable()[0]:
        pytest.skip(f"no usable GPU: {cupy_usable()[1]}")
    for name in ("nep3", "nep4_l6_5body", "nep4_zbl_flexible"):
        evaluator = NEPEvaluator(_model(name, 3, seed=9))

        def on_gpu(ev, types, i, j, d):
            e, g = fused.evaluate(ev, *(cupy.asarray(a) for a in (types, i, j, d)), xp=cupy,
                                  launcher=fused.gpu_launcher)
            return cupy.asnumpy(e), cupy.asnumpy(g)

        assert fused.gpu_launcher(fused.tables(evaluator).source) is not None
        assert_kernel_equals_array_code(evaluator, *_structure("triclinic", 3, seed=9), evaluate=on_gpu)
