"""md_gpu with a real MTP (MLIP-2's Cu level-10 potential): forces vs MLIP's own numbers, NVE, NVT."""
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from md_gpu.errors import MDSetupError
from md_gpu.forcefields import compute_forces
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.integrators import Bussi, Langevin, make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList
from md_gpu.state import from_atoms, kinetic_energy, maxwell_boltzmann
from md_gpu.units import KB

DATA = Path(__file__).parent / "data" / "md"
POT = DATA / "cu_pot_10.mtp"          # MLIP-2 pot_10.mtp of /work/shared/mlip_reference/cubic (fcc Cu)
REFERENCE = DATA / "cu_efs_10_first3.cfg"  # the first 3 frames of MLIP-2's calc-efs output for it

pytest.importorskip("training.mtp.model")


@pytest.fixture(scope="module")
def ff():
    return MTPForceField.read(POT, species=("Cu",))


def test_forces_energy_stress_match_mlip(ff):
    from ase.stress import voigt_6_to_full_3x3_stress
    from training.mtp import read_cfg

    for atoms in read_cfg(REFERENCE):
        ref = dict(atoms.calc.results)
        atoms.set_chemical_symbols(["Cu"] * len(atoms))
        state = from_atoms(atoms, species=ff.species)
        nl = NeighborList(ff.cutoff, 1.0, state.pbc)  # 7.2 Å cell: shorter than 2 x 5 Å cut-off
        nl.build(state.positions, state.cell)
        res = compute_forces(ff, state.positions, state.cell, state.types, nl, per_atom=True)
        assert res.energy == pytest.approx(ref["energy"], abs=1e-8)
        np.testing.assert_allclose(res.forces, ref["forces"], atol=1e-6)
        np.testing.assert_allclose(-res.virial / atoms.get_volume(), voigt_6_to_full_3x3_stress(ref["stress"]),
                                   atol=1e-7)
        np.testing.assert_allclose(res.virials.sum(0), res.virial, atol=1e-10)


def test_species_must_be_known():
    with pytest.raises(MDSetupError, match="does not name its species"):
        MTPForceField.read(POT)
    with pytest.raises(MDSetupError, match="does not exist"):
        MTPForceField.read(DATA / "missing.mtp", species=("Cu",))


def _cu_run(ff, thermostat, dt_fs, temperature_K, seed=11):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    state = maxwell_boltzmann(from_atoms(atoms, species=ff.species), 2 * temperature_K, seed=seed)
    nl = NeighborList(ff.cutoff, 1.0, state.pbc)
    init, step = velocity_verlet(make_force_fn(ff, nl), dt_fs, thermostat=thermostat)
    return init(state, seed=seed), step


@pytest.mark.slow
def test_nve_drift_with_mtp_over_10ps(ff):
    """Acceptance (with Cu MTP until a graphene MTP exists): 300 K, 1 fs, float64, drift < 1e-5 eV/atom/ps over 10 ps."""
    md, step = _cu_run(ff, None, 1.0, 300.0)
    times, energies = [], []
    for k in range(10000):
        md = step(md)
        if k % 10 == 0:
            times.append(md.time_fs * 1e-3)
            energies.append(md.result.energy + kinetic_energy(md.state))
    slope = np.polyfit(times, energies, 1)[0] / md.state.n_atoms
    assert abs(slope) < 1e-5, f"drift {slope:.3g} eV/atom/ps"


@pytest.mark.slow
@pytest.mark.parametrize("thermostat", [Bussi(300.0, tau_fs=20.0), Langevin(300.0, damping_fs=20.0)])
def test_nvt_with_mtp_over_20ps(ff, thermostat):
    """Acceptance: mean T within 1 % of 300 K over 20 ps; KE variance within 10 % of the canonical ndf (kT)^2 / 2."""
    md, step = _cu_run(ff, thermostat, 2.0, 300.0)
    for _ in range(500):
        md = step(md)
    ke = []
    for _ in range(10000):
        md = step(md)
        ke.append(kinetic_energy(md.state))
    ke = np.array(ke)
    ndf = 3 * md.state.n_atoms - 3
    kt = KB * 300.0
    assert 2 * ke.mean() / (ndf * KB) == pytest.approx(300.0, rel=0.01)
    assert ke.var() == pytest.approx(0.5 * ndf * kt * kt, rel=0.10)


def _squeezed_pair(ff, r):
    """2x2x2 fcc Cu with atom 0 moved to distance r (Å) from its nearest neighbour."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    vectors = atoms.get_distances(0, range(1, len(atoms)), mic=True, vector=True)
    k = int(np.argmin(np.linalg.norm(vectors, axis=1)))
    u = vectors[k] / np.linalg.norm(vectors[k])
    atoms.positions[0] += u * (np.linalg.norm(vectors[k]) - r)
    return atoms, u


def _energy_forces(ff, atoms):
    state = from_atoms(atoms, species=ff.species)
    nl = NeighborList(ff.cutoff, 1.0, state.pbc)
    nl.build(state.positions, state.cell)
    res = compute_forces(ff, state.positions, state.cell, state.types, nl)
    return res.energy, np.asarray(res.forces)


def test_short_range_core_is_exactly_the_mtp_above_min_dist(ff):
    bare = MTPForceField.read(POT, species=("Cu",), core=False)
    atoms, _ = _squeezed_pair(ff, 1.05 * ff.mtp.min_dist)
    for a in (atoms, bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)):
        e_core, f_core = _energy_forces(ff, a)
        e_bare, f_bare = _energy_forces(bare, a)
        assert e_core == e_bare and np.array_equal(f_core, f_bare)


def test_short_range_core_repels_and_its_forces_are_the_energy_gradient(ff):
    """Without the core the MTP dives to minus infinity inside min_dist; with it the pair is pushed apart."""
    c = ff.mtp.min_dist
    bare = MTPForceField.read(POT, species=("Cu",), core=False)
    e_contact = _energy_forces(ff, _squeezed_pair(ff, c)[0])[0]
    energies = [_energy_forces(ff, _squeezed_pair(ff, r)[0])[0] for r in np.linspace(0.3 * c, c, 15)]
    assert min(energies) > e_contact - 5.0  # bounded: at most a shallow dip just inside min_dist
    assert energies[0] > e_contact + 20.0 and np.all(np.diff(energies[:5]) < 0)  # then a hard wall
    assert _energy_forces(bare, _squeezed_pair(ff, 0.5 * c)[0])[0] < e_contact - 100.0
    for r in (0.97 * c, 0.85 * c, 0.6 * c):  # central differences through the map g(r) and the wall
        atoms, u = _squeezed_pair(ff, r)
        forces = _energy_forces(ff, atoms)[1]
        h = 1e-5
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[0, axis] += h
            minus.positions[0, axis] -= h
            fd = -(_energy_forces(ff, plus)[0] - _energy_forces(ff, minus)[0]) / (2 * h)
            assert forces[0, axis] == pytest.approx(fd, rel=1e-5, abs=1e-5)
    atoms, u = _squeezed_pair(ff, 0.6 * c)
    assert np.dot(_energy_forces(ff, atoms)[1][0], u) < -50.0  # atom 0 is pushed away from its neighbour


def test_core_radius_from_the_training_data_and_bad_keys():
    """With a core radius above min_dist (the data's shortest Cu-Cu distance), the wall starts there."""
    from ase.build import graphene as ase_graphene
    from training.datasets import shortest_pair_distances

    sheet = ase_graphene(a=2.46, vacuum=5.0).repeat((3, 3, 1))
    assert shortest_pair_distances([sheet]) == {"C-C": pytest.approx(2.46 / np.sqrt(3))}
    wide = MTPForceField.read(POT, species=("Cu",), core_radii={"Cu-Cu": 2.2})
    bare = MTPForceField.read(POT, species=("Cu",), core=False)
    atoms, u = _squeezed_pair(wide, 2.3)
    assert _energy_forces(wide, atoms)[0] == _energy_forces(bare, atoms)[0]
    atoms, u = _squeezed_pair(wide, 1.8)
    e_wide, f_wide = _energy_forces(wide, atoms)
    assert e_wide > _energy_forces(bare, atoms)[0] + 100.0  # 0.4 A inside the wall: > 200 eV
    with pytest.raises(MDSetupError, match="'Cu-B'"):
        MTPForceField.read(POT, species=("Cu",), core_radii={"Cu-B": 1.0})


def test_core_map_applied_to_every_pair_is_the_plain_mtp_above_min_dist(ff):
    """The device path applies the core map to every pair (no host read decides the branch): above the core
    radius it must give the plain MTP's energies and derivatives, equal up to the sign of zeros."""
    atoms, _ = _squeezed_pair(ff, 1.05 * ff.mtp.min_dist)
    state = from_atoms(atoms, species=ff.species)
    nl = NeighborList(ff.cutoff, 0.0, state.pbc)
    nl.build(state.positions, state.cell)
    d = nl.pair_vectors(state.positions, state.cell)
    r2 = (d * d).sum(1)
    assert r2.min() < (1.1 * ff.mtp.min_dist) ** 2  # the squeezed pair is close to, but outside, the core
    plain_e, plain_g = ff.evaluate(state.types, nl.i, nl.j, d)
    mapped_e, mapped_g = ff.with_core(state.types, nl.i, nl.j, d, r2, np)
    assert np.array_equal(mapped_e, plain_e) and np.array_equal(mapped_g, plain_g)
