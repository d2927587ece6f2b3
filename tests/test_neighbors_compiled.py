"""The compiled cell list (training.mtp.cell_list) against the array neighbour lists it replaces on the CPU.

Same pair sets (i, j, image) and the same vectors d (to round-off) as ``md_gpu.neighbors.array_build_pairs``
(the MD's cell list in array code), its brute-force reference, and ``training.mtp.neighbors.
array_neighbor_pairs`` (the calculator's brute force / ASE list) on: random triclinic cells with atoms
outside the cell, a strongly sheared cell and a long orthorhombic one (the pruning bound), small cells that
need many images of each atom, sheets (vacuum along a non-periodic z, also with a tilted in-plane cell), a
wire (one periodic direction), a molecule without a cell, and bulk fcc Cu.  The list without images or
vectors, and the AVX-512, AVX2 and scalar scans, give the same bits; arrays that are too short are
retried; a pruning bound made too loose is caught; the MD Verlet list on top of it; its cost against a
level-10 evaluation.
"""
import ctypes
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, graphene

import common.native as native
from md_gpu.neighbors import NeighborList, array_build_pairs, brute_force_pairs, build_pairs
from training.mtp import MTP, cell_list, host_kernel
from training.mtp.cell_list import cell_list_pairs
from training.mtp.neighbors import array_neighbor_pairs, neighbor_pairs

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler (g++) for the compiled cell list")


def _random_triclinic(seed: int, n: int, scale: float) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(0.8, 1.2, 3) * scale) + rng.uniform(-0.45, 0.45, (3, 3)) * scale
    return Atoms("H" * n, scaled_positions=rng.uniform(-0.5, 1.5, (n, 3)), cell=cell, pbc=True)


def _sheet(tilted: bool) -> Atoms:
    atoms = graphene("C2", a=2.46, vacuum=8.0, size=(4, 3, 1))
    if tilted:
        atoms.set_cell(atoms.cell.array @ [[1.0, 0.1, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]], scale_atoms=True)
    atoms.pbc = (True, True, False)
    atoms.positions += np.random.default_rng(3).normal(0.0, 0.15, atoms.positions.shape)  # buckled
    return atoms


def _sheared() -> Atoms:
    """A cell 20 degrees from flat (the smallest eigenvalue of the pruning metric about 0.1)."""
    cell = np.array([[10.0, 0.0, 0.0], [9.4, 3.4, 0.0], [1.0, 2.0, 9.0]])
    return Atoms("H" * 60, scaled_positions=np.random.default_rng(11).uniform(0, 1, (60, 3)), cell=cell, pbc=True)


STRUCTURES = {
    **{f"triclinic {s}": _random_triclinic(s, 40, 9.0) for s in range(4)},
    "dense triclinic": _random_triclinic(9, 300, 16.0),
    "sheared": _sheared(),
    "long orthorhombic": Atoms("H" * 80, scaled_positions=np.random.default_rng(12).uniform(0, 1, (80, 3)),
                               cell=[31.0, 6.5, 11.0], pbc=True),
    "tiny triclinic, many images": _random_triclinic(7, 3, 3.0),
    "primitive fcc (one atom)": bulk("Cu", "fcc", a=3.61),
    "sheet": _sheet(False),
    "tilted sheet": _sheet(True),
    "wire": Atoms("H8", positions=np.random.default_rng(5).uniform(0, 6, (8, 3)), cell=[2.5, 20.0, 20.0],
                  pbc=(True, False, False)),
    "molecule without a cell": Atoms("H6", positions=np.random.default_rng(6).uniform(0, 4, (6, 3))),
    "bulk fcc Cu": bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4)),
}
STRUCTURES["bulk fcc Cu"].rattle(0.05, seed=1)


def _by_image(i, j, images, d):
    """{(i, j, image): d} (and the count, to see duplicates)."""
    table = {(int(a), int(b), tuple(int(x) for x in s)): v for a, b, s, v in zip(i, j, np.asarray(images), d)}
    return table, len(i)


def _cell_of(atoms):
    return atoms.cell.array if atoms.cell.rank == 3 else np.eye(3)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("r_list", [2.9, 5.3])
def test_same_pairs_and_vectors_as_the_array_lists(name, r_list):
    atoms = STRUCTURES[name]
    i, j, images, d = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, r_list)
    assert np.all(np.diff(i) >= 0)  # sorted by centre atom (the kernel's CSR needs no sort)
    ours, count = _by_image(i, j, images, d)
    assert count == len(ours) and count > 0  # no pair twice
    # the vectors are those of the unfolded positions and the integer images
    cell = _cell_of(atoms)
    np.testing.assert_allclose(d, atoms.positions[j] + images @ cell - atoms.positions[i], rtol=0, atol=1e-12)
    assert np.all(np.einsum("pc,pc->p", d, d) < r_list ** 2)
    if atoms.cell.rank == 3:  # the MD engine's array cell list and its brute force reference
        ai, aj, ashift = array_build_pairs(atoms.positions, cell, tuple(atoms.pbc), r_list)
        theirs, _ = _by_image(ai, aj, ashift.astype(int), np.zeros((len(ai), 3)))
        assert set(ours) == set(theirs)
        assert set(ours) == brute_force_pairs(atoms.positions, cell, atoms.pbc, r_list)
    # the calculator's array list (no images: compare the sorted vectors of each pair of atoms)
    ci, cj, cd = array_neighbor_pairs(atoms, r_list)
    assert len(ci) == len(i)
    for a, b, v in ((i, j, d), (ci, cj, cd)):
        order = np.lexsort((*np.round(v, 8).T[::-1], b, a))
        a[:], b[:], v[:] = a[order], b[order], v[order]
    assert np.array_equal(i, ci) and np.array_equal(j, cj)
    np.testing.assert_allclose(d, cd, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_without_images_or_vectors_and_by_every_scan_the_same_bits(name):
    """The list without images (the vector scan of the build, where the host has AVX-512 or AVX2) or
    without vectors, and the builds without AVX-512 and without vector scans (``scan``), equal the full
    list bit for bit."""
    atoms = STRUCTURES[name]
    args = (atoms.positions, atoms.cell.array, atoms.pbc, 5.3)
    i, j, images, d = cell_list_pairs(*args)
    for options in ({"images": False}, {"vectors": False}, {"images": False, "vectors": False},
                    {"images": False, "scan": "avx2"}, {"images": False, "scan": "scalar"}, {"scan": "scalar"}):
        listed = cell_list_pairs(*args, **options)
        if listed is None and options.get("scan") == "avx2":
            continue  # a compiler without -mno-avx512f (not x86)
        oi, oj, oimages, od = listed
        assert np.array_equal(oi, i) and np.array_equal(oj, j), options
        assert (oimages is None) == (options.get("images") is False)
        assert (od is None) == (options.get("vectors") is False)
        assert oimages is None or np.array_equal(oimages, images)
        assert od is None or np.array_equal(od, d)


def test_the_builds_have_the_vector_scans_of_this_host():
    """On an x86 host with AVX-512 the native build scans 8 candidates at a time and the avx2 build 4; the
    scalar build none (so the comparison above covers each scan that can run here)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    expected = 512 if " avx512f" in flags else 256 if " avx2" in flags else 0
    assert cell_list.simd_width() == expected
    assert cell_list.simd_width("scalar") == 0
    if " avx2" in flags:
        assert cell_list.simd_width("avx2") == 256


def test_arrays_that_are_too_short_are_retried(monkeypatch):
    """An estimate far too low (1 pair per atom): the kernel reports the capacity it needs and the second
    call returns the same list."""
    atoms = STRUCTURES["bulk fcc Cu"]
    i, j, _, d = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 5.0, images=False)
    monkeypatch.setitem(cell_list._PAIRS_PER_ATOM, 5.0, 1.0)
    calls = []
    function = cell_list._function()
    monkeypatch.setattr(cell_list, "_function", lambda scan="native": lambda *a: calls.append(1) or function(*a))
    si, sj, _, sd = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 5.0, images=False)
    assert len(calls) == 2 and len(i) > 40 * len(atoms)
    assert np.array_equal(si, i) and np.array_equal(sj, j) and np.array_equal(sd, d)


def test_a_pruning_bound_too_loose_is_caught():
    """A planted fault: the metric's smallest eigenvalue taken 1.5 times too large prunes bins that hold
    neighbours in the sheared cell, and the comparison with the brute force sees the missing pairs."""
    source = cell_list.SOURCE.replace("lambda * (1.0 - 1e-9)", "1.5 * lambda * (1.0 - 1e-9)")
    assert source != cell_list.SOURCE
    function = native.load_function(source, "cell_list", ctypes.c_int)
    atoms = STRUCTURES["sheared"]
    reference = brute_force_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 5.3)
    i, j, images, _ = cell_list._call(function, atoms.positions, atoms.cell.array, atoms.pbc, 5.3,
                                      images=True, vectors=False)
    faulty, _ = _by_image(i, j, images, np.zeros((len(i), 3)))
    assert set(faulty) < reference
    i, j, images, _ = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 5.3, vectors=False)
    assert set(_by_image(i, j, images, np.zeros((len(i), 3)))[0]) == reference


def test_the_defaults_are_the_compiled_lists():
    atoms = STRUCTURES["tilted sheet"]
    i, j, d = neighbor_pairs(atoms, 4.0)
    ci, cj, _, cd = cell_list_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    assert np.array_equal(i, ci) and np.array_equal(j, cj) and np.array_equal(d, cd)
    bi, bj, bs = build_pairs(atoms.positions, atoms.cell.array, tuple(atoms.pbc), 4.0)
    assert np.array_equal(bi, ci) and bs.dtype == np.float64


def test_a_flat_cell_with_a_periodic_direction_is_one_clear_error():
    atoms = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[4.0, 4.0, 0.0], pbc=(True, True, False))
    with pytest.raises(ValueError, match="zero volume.*give the vacuum direction a length"):
        neighbor_pairs(atoms, 3.0)


def test_the_md_verlet_list_rebuilt_on_the_compiled_list_matches_the_array_one(monkeypatch):
    """NeighborList on a deforming sheet: the compiled and the array build give the same pairs at every
    rebuild, and the same pair vectors in between."""
    atoms = _sheet(True)
    rng = np.random.default_rng(8)
    lists = {"compiled": NeighborList(4.0, 1.0, (True, True, False)),
             "array": NeighborList(4.0, 1.0, (True, True, False))}
    positions, cell = atoms.positions.copy(), atoms.cell.array.copy()
    for step in range(6):
        for name, nl in lists.items():
            monkeypatch.setenv(native.ENV_VAR, "numpy" if name == "array" else "compiled")
            nl.update(positions, cell)
        monkeypatch.delenv(native.ENV_VAR)
        a, b = (_by_image(nl.i, nl.j, nl.shifts.astype(int), nl.pair_vectors(positions, cell))
                for nl in lists.values())
        assert set(a[0]) == set(b[0])
        np.testing.assert_allclose(np.array([a[0][k] for k in b[0]]), np.array(list(b[0].values())), atol=1e-12)
        positions = positions + rng.normal(0.0, 0.3, positions.shape)
        cell = cell @ np.diag([1.02, 1.0, 1.0])
    assert lists["compiled"].n_builds == lists["array"].n_builds > 2


def test_the_cell_list_costs_a_small_part_of_a_level_10_evaluation():
    """864-atom fcc Cu, cut-off 5 Å: building the list (CPU time, best of 5) costs under 0.2 of the compiled
    level-10 evaluation on it (benchmarks/mtp_eval.py prints the ratio: 0.06 measured on one core with the
    AVX-512 scan, 0.09 with the scalar one; the bound leaves room for a loaded machine)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((6, 6, 6))
    atoms.rattle(0.05, seed=0)
    mtp = MTP.untrained(10, 1, min_dist=1.5, max_dist=5.0, seed=0)
    mtp.moment_coeffs = np.random.default_rng(0).normal(0.0, 0.1, mtp.basis_size)
    types = np.zeros(len(atoms), dtype=np.int64)

    def best(call):
        times = []
        for _ in range(5):
            start = time.process_time()
            out = call()
            times.append(time.process_time() - start)
        return min(times), out

    t_list, (i, j, d) = best(lambda: neighbor_pairs(atoms, mtp.cutoff))
    host_kernel.evaluate(mtp, types, i, j, d)  # compile and self-check
    t_eval, _ = best(lambda: host_kernel.evaluate(mtp, types, i, j, d))
    assert t_list < 0.2 * t_eval, (t_list, t_eval)


LIST_SCRIPT = """
import sys
import numpy as np
from ase.build import bulk
from training.mtp import cell_list
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((11, 10, 10))
atoms.rattle(0.05, seed=2)
args = (atoms.positions, atoms.cell.array, atoms.pbc, 5.5)
full = cell_list.cell_list_pairs(*args)
cell_list._PAIRS_PER_ATOM[5.5] = 30.0  # too short for some threads' shares: the call is repeated
i, j, _, d = cell_list.cell_list_pairs(*args, images=False)
np.savez(sys.argv[1], *full, i, j, d)
"""


def test_two_threads_give_the_same_list_as_one(tmp_path):
    """4400 atoms (above PARALLEL_MIN_ATOMS): threads take contiguous ranges of centre atoms, so the list
    is the same, in the same order, for 1 and 2 OpenMP threads; also without images (the vector scan on
    an AVX-512 host) after arrays too short for the threads' shares."""
    import os
    import subprocess
    import sys

    lists = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(Path(__file__).parents[1])}
        subprocess.run([sys.executable, "-c", LIST_SCRIPT, str(tmp_path / f"{threads}.npz")], env=env, check=True,
                       timeout=300)
        with np.load(tmp_path / f"{threads}.npz") as data:
            lists.append([data[f"arr_{k}"] for k in range(7)])
    assert len(lists[0][0]) > 4400 * 50
    assert all(np.array_equal(a, b) for a, b in zip(*lists))
    i, j, _, d, si, sj, sd = lists[1]
    assert np.array_equal(si, i) and np.array_equal(sj, j) and np.array_equal(sd, d)
