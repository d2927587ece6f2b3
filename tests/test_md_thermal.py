"""Heat transport: the many-body heat current (finite differences), HNEMD force, NEMD energy balance, APIs."""
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from md_gpu.forcefields import compute_forces
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.neighbors import NeighborList
from md_gpu.protocols import RunSettings, extrapolate_length, heat_current, heat_currents_per_atom
from md_gpu.protocols.thermal import driving_forces
from md_gpu.state import from_atoms, maxwell_boltzmann
from md_gpu.units import FS

DATA = Path(__file__).parent / "data" / "md"
POT = DATA / "graphene_l08.mtp"
QUIET = dict(log=lambda line: None)

pytest.importorskip("training.mtp.model")


@pytest.fixture(scope="module")
def ff():
    return MTPForceField.read(POT, species=("C",))


def flake(n_rings=3, seed=0):
    """An isolated, slightly disordered graphene flake (~30 C atoms) in a box of vacuum (pbc off)."""
    from training.structures import graphene

    sheet = graphene(repeat=(n_rings, 2))
    rng = np.random.default_rng(seed)
    pos = sheet.positions + rng.normal(scale=0.05, size=sheet.positions.shape)
    return Atoms(sheet.get_chemical_symbols(), positions=pos + [7.0, -3.0, 11.0], cell=[40, 40, 40], pbc=False)


def evaluate(ff, state):
    nl = NeighborList(ff.cutoff, 0.0, state.pbc)
    nl.build(state.positions, state.cell)
    d = nl.pair_vectors(state.positions, state.cell)
    inside = (d * d).sum(1) < ff.cutoff ** 2
    i, j, d = nl.i[inside], nl.j[inside], d[inside]
    return compute_forces(ff, state.positions, state.cell, state.types, nl, per_atom=True), (i, j, d)


def test_many_body_heat_current_matches_finite_differences_and_not_the_pairwise_shortcut(ff):
    """J_pot = sum_i W_i v_i equals d/dt sum_a r_a U_a - sum_a v_a U_a + sum_a r_a (F_a . v_a) along r + v t.

    Along a straight path (v constant) the kinetic energies do not change, so the kinetic power
    F . v that the true dynamics would put into e_a is added back explicitly (module docstring of
    md_gpu.protocols.thermal). The flake is shifted off the origin so that the r_a terms matter.
    """
    state = maxwell_boltzmann(from_atoms(flake(), species=ff.species), 600.0, seed=1)
    v = state.velocities
    res, (i, j, d) = evaluate(ff, state)
    h = 1e-3 * FS  # 1e-3 fs in ASE time units

    def r_u(t):
        moved = state.replace(positions=state.positions + t * v)
        r, _ = evaluate(ff, moved)
        return (moved.positions * r.energies[:, None]).sum(0)

    fd = (r_u(h) - r_u(-h)) / (2 * h)
    expected = (fd - (v * res.energies[:, None]).sum(0)
                + (state.positions * (res.forces * v).sum(1)[:, None]).sum(0)) * FS  # eV Å/fs
    kinetic = 0.5 * state.masses * (v * v).sum(1)
    j_pot = heat_current(state, res) - ((kinetic + res.energies)[:, None] * v).sum(0) * FS
    np.testing.assert_allclose(j_pot, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    assert np.allclose(heat_currents_per_atom(state, res).sum(0), heat_current(state, res))

    # The pairwise shortcut (half of each pair's virial to each atom) is a different number.
    _, dE_dd = ff.evaluate(state.types, i, j, d, xp=np)
    pair = -d[:, :, None] * dE_dd[:, None, :]
    w_half = np.zeros((state.n_atoms, 3, 3))
    np.add.at(w_half, i, 0.5 * pair)
    np.add.at(w_half, j, 0.5 * pair)
    j_shortcut = (w_half * v[:, None, :]).sum((0, 2)) * FS
    assert np.abs(j_shortcut - expected).max() > 0.05 * np.abs(expected).max()


def test_hnemd_driving_force_has_zero_sum_and_injects_fe_dot_jpot(ff):
    state = maxwell_boltzmann(from_atoms(flake(), species=ff.species), 300.0, seed=2)
    res, _ = evaluate(ff, state)
    fe = np.array([1e-4, -2e-5, 0.0])
    f = driving_forces(res.virials, fe)
    assert np.abs(f.sum(0)).max() < 1e-12
    v = state.velocities
    j_pot = (res.virials * v[:, None, :]).sum((0, 2))
    assert (f * v).sum() == pytest.approx(fe @ j_pot, rel=1e-10)


def test_extrapolate_length_recovers_a_known_limit():
    lengths = np.array([50.0, 100.0, 200.0])
    kappas = 1.0 / (1.0 / 400.0 + 2.0 / lengths)
    out = extrapolate_length(lengths, kappas, 0.02 * kappas)
    assert out["conductivity_W_per_mK"] == pytest.approx(400.0, rel=1e-9)
    assert 0 < out["sem"] < 400.0
    two = extrapolate_length(lengths[:2], kappas[:2], 0.02 * kappas[:2])
    assert two["conductivity_W_per_mK"] == pytest.approx(400.0, rel=1e-9)
