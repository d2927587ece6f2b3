"""The compiled Verlet filter (md_gpu.verlet_filter) against the array code of the MD step's exact check.

The pairs of a Verlet list inside the cut-off, their order and their vectors must be those of
``NeighborList.pair_vectors`` + mask + compaction (the path of every other backend), on bulk, skewed and
sheet cells; the MD step then gives the array path's trajectory; a fault planted in the kernel's test of
the cut-off is seen by the same comparison.
"""
import numpy as np
import pytest

import md_gpu.neighbors as neighbors
from md_gpu import verlet_filter
from md_gpu.integrators import Bussi, make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList
from md_gpu.state import from_atoms, maxwell_boltzmann
from tests.morse_cells import FF, cu
from tests.test_md_deferred_checks import cells

pytestmark = pytest.mark.skipif(not verlet_filter.available(), reason="compiled kernels are not available")


def array_within(nl, positions, cell, cutoff):
    d = nl.pair_vectors(positions, cell)
    keep = (d * d).sum(1) < cutoff * cutoff
    return nl.i[keep], nl.j[keep], d[keep]


def moved_list(atoms, seed=5):
    """A list built with a 1 Å skin for ``atoms``, and positions moved by up to 0.3 Å since (pairs cross the
    cut-off both ways)."""
    state = from_atoms(atoms)
    nl = NeighborList(FF.cutoff, 1.0, state.pbc)
    nl.build(state.positions, state.cell)
    moved = state.positions + np.random.default_rng(seed).uniform(-0.3, 0.3, state.positions.shape)
    return nl, moved, state.cell


@pytest.mark.parametrize("name", ["bulk", "sheet", "skew"])
def test_the_compiled_filter_is_the_array_code(name):
    nl, positions, cell = moved_list(cells()[name])
    i, j, d = verlet_filter.compiled_pairs_within(nl.i, nl.j, nl.shifts, positions, cell, FF.cutoff)
    ai, aj, ad = array_within(nl, positions, cell, FF.cutoff)
    assert 0 < len(ai) < len(nl.i)
    assert np.array_equal(i, ai) and np.array_equal(j, aj)
    np.testing.assert_allclose(d, ad, rtol=0, atol=1e-13)


def test_an_md_run_on_the_compiled_filter_is_the_array_runs(monkeypatch):
    finals = []
    for compiled in (True, False):
        monkeypatch.setattr(neighbors, "verlet_filter_available", lambda c=compiled: c)
        state = maxwell_boltzmann(from_atoms(cu(2)), 900.0, seed=4)
        nl = NeighborList(FF.cutoff, 0.3, state.pbc)
        init, step = velocity_verlet(make_force_fn(FF, nl), 2.0, thermostat=Bussi(900.0, 50.0))
        md = init(state, seed=1)
        for _ in range(60):
            md = step(md)
        assert nl.n_builds >= 2
        finals.append(md.state.positions)
    np.testing.assert_allclose(finals[0], finals[1], rtol=0, atol=1e-10)


def test_a_fault_planted_in_the_kernel_is_seen(monkeypatch):
    """The cut-off test moved in by 1 %: the comparison above fails (the pairs differ)."""
    monkeypatch.setattr(verlet_filter, "SOURCE", verlet_filter.SOURCE.replace("r2 < cutoff2", "r2 < 0.98 * cutoff2"))
    nl, positions, cell = moved_list(cells()["bulk"])
    i, _, _ = verlet_filter.compiled_pairs_within(nl.i, nl.j, nl.shifts, positions, cell, FF.cutoff)
    assert len(i) < len(array_within(nl, positions, cell, FF.cutoff)[0])


def test_bad_arrays_are_named():
    nl, positions, cell = moved_list(cu(1))
    with pytest.raises(ValueError, match="shifts \\[p, 3\\]"):
        verlet_filter.compiled_pairs_within(nl.i, nl.j, nl.shifts[:-1], positions, cell, FF.cutoff)
