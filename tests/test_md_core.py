"""md_gpu core: neighbour lists vs brute force, forces vs finite differences, NVE drift, thermostats."""
import numpy as np
import pytest
from ase.build import bulk

from common.voigt import to_voigt
from md_gpu.errors import MDRunError, MDSetupError
from md_gpu.forcefields import LennardJones, Morse, compute_forces, forces_and_virial
from md_gpu.integrators import Bussi, Langevin, make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList, brute_force_pairs, build_pairs
from md_gpu.state import from_atoms, kinetic_energy, maxwell_boltzmann, temperature
from md_gpu.units import KB
from training.mtp import forces_and_virial as mtp_forces_and_virial

CU_MORSE = dict(D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)  # Girifalco & Weizer (1959) Cu


def _as_set(i, j, s):
    return {(int(a), int(b), tuple(int(round(x)) for x in c)) for a, b, c in zip(i, j, s)}


CELLS = {
    "cubic": (np.diag([10.0, 11.0, 12.0]), (True, True, True), 60),
    "triclinic_small": (np.array([[4.0, 0, 0], [1.5, 3.8, 0], [0.7, 0.4, 4.5]]), (True, True, True), 5),
    "sheet_triclinic": (np.array([[7.0, 0, 0], [3.0, 6.0, 0], [0, 0, 20.0]]), (True, True, False), 30),
    "single_atom_tiny": (np.diag([3.0, 3.0, 3.0]), (True, True, True), 1),
    "slab_x_open": (np.array([[12.0, 0, 0], [0, 4.0, 0], [0, 1.0, 4.5]]), (False, True, True), 20),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_pairs_match_brute_force(name):
    cell, pbc, n = CELLS[name]
    pos = np.random.default_rng(3).random((n, 3)) @ cell
    if not pbc[0]:
        pos[:, 0] *= 0.6  # atoms inside the open box, vacuum around
    pos[0] += cell[0] * 1.7 if pbc[0] else 0.0  # an unwrapped atom outside the cell
    got = _as_set(*build_pairs(pos, cell, pbc, 5.0))
    assert got == brute_force_pairs(pos, cell, pbc, 5.0)
    assert len(got) > 0


def test_verlet_list_rebuild_rule_with_deforming_cell():
    """Pairs within the cut-off are always in the list, also while the cell is strained."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(0)
    nl = NeighborList(4.0, 0.8, (True, True, True))
    pos, cell = atoms.positions.copy(), np.array(atoms.cell)
    for step in range(60):
        pos = pos @ np.diag([1.002, 0.999, 1.0]) + rng.normal(0, 0.02, pos.shape)
        cell = cell @ np.diag([1.002, 0.999, 1.0])
        nl.update(pos, cell)
        d = nl.pair_vectors(pos, cell)
        inside = np.linalg.norm(d, axis=1) < 4.0
        listed = _as_set(nl.i[inside], nl.j[inside], nl.shifts[inside])
        assert listed == brute_force_pairs(pos, cell, (True,) * 3, 4.0)
    assert 1 < nl.n_builds < 60  # rebuilt, but not every step


def test_zero_volume_cell_is_a_clear_error():
    with pytest.raises(MDSetupError, match="zero volume"):
        build_pairs(np.zeros((2, 3)), np.diag([5.0, 5.0, 0.0]), (True, True, False), 3.0)


@pytest.mark.parametrize("ff", [Morse(("Cu",), **CU_MORSE),
                                LennardJones(("Cu", "Ag"), epsilon=[[0.4, 0.3], [0.3, 0.35]],
                                             sigma=[[2.3, 2.4], [2.4, 2.5]], cutoff=5.0)])
def test_forces_and_virial_match_finite_differences(ff):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.08, seed=2)
    types = np.arange(len(atoms)) % len(ff.species)
    cell = np.array(atoms.cell) @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]])  # triclinic
    pos = atoms.get_scaled_positions() @ cell
    nl = NeighborList(ff.cutoff, 0.5, (True,) * 3)
    nl.build(pos, cell)
    res = compute_forces(ff, pos, cell, types, nl, per_atom=True)
    h = 1e-5
    for a, k in [(0, 0), (3, 1), (7, 2), (11, 0)]:
        p = pos.copy()
        p[a, k] += h
        ep = compute_forces(ff, p, cell, types, nl).energy
        p[a, k] -= 2 * h
        em = compute_forces(ff, p, cell, types, nl).energy
        assert res.forces[a, k] == pytest.approx(-(ep - em) / (2 * h), rel=1e-7, abs=1e-7)
    # virial: W = -dE/d(eps) under homogeneous strain of cell and positions
    for a, b in [(0, 0), (1, 1), (0, 1), (2, 0)]:
        e = np.zeros((3, 3))
        e[a, b] = h
        ep = compute_forces(ff, pos @ (np.eye(3) + e), cell @ (np.eye(3) + e), types, nl).energy
        em = compute_forces(ff, pos @ (np.eye(3) - e), cell @ (np.eye(3) - e), types, nl).energy
        assert res.virial[a, b] == pytest.approx(-(ep - em) / (2 * h), rel=1e-7, abs=1e-7)
    np.testing.assert_allclose(res.virials.sum(0), res.virial, atol=1e-12)
    np.testing.assert_allclose(res.forces.sum(0), 0.0, atol=1e-10)
    assert res.energies.sum() == pytest.approx(res.energy)


def test_forces_and_virial_is_the_mtp_one_and_per_atom_is_optional():
    """md_gpu's scatter on NumPy is training.mtp's (bit for bit); without per_atom no per-atom virials."""
    rng = np.random.default_rng(4)
    i, j = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    d, g = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    ours = forces_and_virial(i, j, d, g, 6, np)
    theirs = mtp_forces_and_virial(i, j, d, g, 6)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    forces, virial, virials = forces_and_virial(i, j, d, g, 6, np, per_atom=False)
    assert virials is None and np.array_equal(forces, ours[0]) and np.array_equal(virial, ours[1])


def test_voigt_with_and_without_symmetrising():
    t = np.arange(2 * 9 * 4, dtype=float).reshape(2, 3, 3, 4) ** 1.5
    upper = to_voigt(t, symmetrise=False, axis=1)
    assert upper.shape == (2, 6, 4)
    assert np.array_equal(upper[:, 3:], t[:, [1, 0, 0], [2, 2, 1]])
    mean = to_voigt(np.moveaxis(t, 3, 1))  # [2, 4, 3, 3] -> [2, 4, 6]
    np.testing.assert_array_equal(np.moveaxis(mean, 2, 1), to_voigt(t, axis=1))
    assert np.array_equal(mean[..., 5], 0.5 * (t[:, 0, 1] + t[:, 1, 0]))


def test_pair_potential_is_zero_and_smooth_at_cutoff():
    ff = Morse(("Cu",), **CU_MORSE)
    d = np.array([[ff.cutoff - 1e-9, 0.0, 0.0]])
    e, g = ff.evaluate(np.array([0, 0]), np.array([0]), np.array([1]), d)
    assert abs(e.sum()) < 1e-12 and np.abs(g).max() < 1e-9


def test_blow_up_is_a_clear_error():
    ff = LennardJones(("Cu",), epsilon=0.4, sigma=2.3, cutoff=5.0)
    pos = np.array([[0.0, 0, 0], [0.0, 0, 0]])
    cell = np.diag([10.0, 10, 10])
    nl = NeighborList(5.0, 0.5, (True,) * 3)
    nl.build(pos + [[0, 0, 0], [1e-3, 0, 0]], cell)
    with pytest.warns(RuntimeWarning), pytest.raises(MDRunError, match="blew up"):
        compute_forces(ff, pos, cell, np.zeros(2, int), nl)


def _cu_md(thermostat, dt_fs, T, seed, n_rep=3):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n_rep)
    ff = Morse(("Cu",), **CU_MORSE)
    state = maxwell_boltzmann(from_atoms(atoms), 2 * T, seed=seed)
    nl = NeighborList(ff.cutoff, 1.0, (True,) * 3)
    init, step = velocity_verlet(make_force_fn(ff, nl), dt_fs, thermostat=thermostat)
    return init(state, seed=seed), step


def test_nve_energy_drift_is_small():
    md, step = _cu_md(None, 2.0, 300.0, 1)
    energies = []
    for _ in range(500):
        md = step(md)
        energies.append(md.result.energy + kinetic_energy(md.state))
    n = md.state.n_atoms
    assert np.ptp(energies) / n < 5e-4  # fluctuation, eV/atom
    slope = np.polyfit(np.arange(500) * 2e-3, energies, 1)[0] / n  # eV/atom/ps
    assert abs(slope) < 1e-4


@pytest.mark.parametrize("thermostat", [Bussi(300.0, tau_fs=20.0), Langevin(300.0, damping_fs=50.0)])
def test_thermostat_mean_and_canonical_variance(thermostat):
    """Kinetic energy of N atoms is Gamma(ndf/2, kT): mean ndf kT/2, variance ndf (kT)^2/2."""
    md, step = _cu_md(thermostat, 4.0, 300.0, 7, n_rep=2)
    for _ in range(300):
        md = step(md)
    ke = []
    for _ in range(3000):
        md = step(md)
        ke.append(kinetic_energy(md.state))
    ke = np.array(ke)
    ndf = 3 * md.state.n_atoms - 3
    kt = KB * 300.0
    assert ke.mean() == pytest.approx(0.5 * ndf * kt, rel=0.03)
    assert ke.var() == pytest.approx(0.5 * ndf * kt * kt, rel=0.25)


def test_bussi_conserves_effective_energy_and_is_reproducible():
    runs = []
    for _ in range(2):
        md, step = _cu_md(Bussi(300.0, tau_fs=50.0), 2.0, 300.0, 5, n_rep=2)
        e0 = md.result.energy + kinetic_energy(md.state)
        for _ in range(200):
            md = step(md)
        runs.append(md)
        assert md.result.energy + kinetic_energy(md.state) + md.heat == pytest.approx(e0, abs=5e-3)
    np.testing.assert_array_equal(runs[0].state.positions, runs[1].state.positions)
    assert temperature(runs[0].state) > 0


def test_bad_thermostat_settings():
    with pytest.raises(MDSetupError, match="tau_fs"):
        Bussi(300.0, tau_fs=0.0)
    with pytest.raises(MDSetupError, match="damping_fs"):
        Langevin(300.0, damping_fs=-1.0)
    with pytest.raises(MDSetupError, match="dt_fs"):
        velocity_verlet(lambda s: None, 0.0)
