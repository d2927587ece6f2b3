"""MTP forces and stress against finite differences of the energy.

Forces: F_a = -dE/dr_a by central differences of every Cartesian coordinate.  Stress: ASE's
sigma_ab = (1/V) dE/d eps_ab for the symmetric strain eps (cell and positions scaled by I + eps).
Two systems: a sheared triclinic three-species cell (MLIP-2's trained Cu/Ag/Au level-10 potential,
tests/data/mlip/multi/pot_10.mtp) and a buckled two-species 2D sheet with vacuum and pbc = (T, T, F)
(an untrained level-16 MTP with random coefficients, so that every moment contributes).  Also checks the
per-atom and pair-level outputs (``evaluate``'s dE/dd, ``forces_and_virial``'s per-atom virial) against
the same differences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import graphene

from training.mtp import MTP, MTPCalculator, forces_and_virial, neighbor_pairs, read_cfg

DATA = Path(__file__).parent / "data" / "mlip"
STEP = 1e-5  # Å (positions) and strain; central differences are then exact to ~1e-9 relative


def _triclinic_multi() -> tuple[Atoms, MTP]:
    """27 atoms of types 0/1/2 (MLIP's first multi configuration: fcc, composition 7/7/13 as in the whole
    training set), sheared so that all three cell angles differ, atoms displaced by ~0.05 Å."""
    mtp = MTP.read(DATA / "multi" / "pot_10.mtp")
    atoms = read_cfg(DATA / "multi" / "efs_06.cfg.gz")[0]
    atoms.calc = None
    atoms.set_cell(atoms.cell.array @ [[1.0, 0.03, -0.02], [0.0, 0.98, 0.04], [0.0, 0.0, 1.02]], scale_atoms=True)
    atoms.positions += np.random.default_rng(7).normal(0.0, 0.05, atoms.positions.shape)
    return atoms, mtp


def _buckled_sheet() -> tuple[Atoms, MTP]:
    """A 3x3 graphene sheet (18 atoms, C and B) buckled by ±0.15 Å, 18 Å of vacuum, pbc = (T, T, F)."""
    atoms = graphene("C2", a=2.46, vacuum=9.0, size=(3, 3, 1))
    rng = np.random.default_rng(3)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    atoms.positions[:, 2] += rng.choice([-0.15, 0.15], len(atoms))
    symbols = np.array(["C"] * len(atoms))
    symbols[rng.permutation(len(atoms))[:6]] = "B"
    atoms.set_chemical_symbols(symbols)
    atoms.pbc = (True, True, False)
    mtp = MTP.untrained(16, 2, min_dist=1.0, max_dist=4.5, species=["C", "B"], seed=11)
    mtp.moment_coeffs = np.random.default_rng(12).normal(0.0, 1e-5, mtp.basis_size)
    mtp.species_coeffs = np.array([-1.5, -2.5])
    return atoms, mtp


def _energy(atoms: Atoms, mtp: MTP) -> float:
    atoms = atoms.copy()
    atoms.calc = MTPCalculator(mtp)
    return atoms.get_potential_energy()


def _fd_forces(atoms: Atoms, mtp: MTP) -> np.ndarray:
    forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for c in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[a, c] += sign * STEP
                energies.append(_energy(moved, mtp))
            forces[a, c] = -(energies[0] - energies[1]) / (2.0 * STEP)
    return forces


def _fd_stress(atoms: Atoms, mtp: MTP) -> np.ndarray:
    """ASE stress (Voigt xx yy zz yz xz xy, eV/Å³) from the energy under symmetric strains."""
    volume = atoms.get_volume()
    stress = []
    for a, b in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        energies = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * sign * STEP
            eps[b, a] += 0.5 * sign * STEP
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            energies.append(_energy(strained, mtp))
        stress.append((energies[0] - energies[1]) / (2.0 * STEP) / volume)
    return np.array(stress)


@pytest.mark.parametrize("build", [_triclinic_multi, _buckled_sheet], ids=["triclinic-3species", "sheet-vacuum"])
def test_forces_and_stress_equal_finite_differences(build):
    atoms, mtp = build()
    atoms.calc = MTPCalculator(mtp)
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert np.abs(forces).max() > 0.1 and np.abs(stress).max() > 1e-3  # not a trivially symmetric point
    fd_forces, fd_stress = _fd_forces(atoms, mtp), _fd_stress(atoms, mtp)
    np.testing.assert_allclose(forces, fd_forces, rtol=0, atol=1e-6 * max(1.0, np.abs(forces).max()))
    np.testing.assert_allclose(stress, fd_stress, rtol=0, atol=1e-7 * max(1.0, np.abs(stress).max()))
    # momentum conservation and the per-atom outputs add up to the totals
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_stresses().sum(axis=0), stress, atol=1e-12)


def test_pair_gradient_equals_finite_differences():
    """``evaluate``'s dE/dd_p against differences of one pair vector at a time (the MD-engine contract)."""
    atoms, mtp = _triclinic_multi()
    types = atoms.arrays["mlip_type"]
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    energies, de_dd = mtp.evaluate(types, i, j, d)
    rng = np.random.default_rng(0)
    for p in rng.choice(len(d), 12, replace=False):
        for c in range(3):
            totals = []
            for sign in (1.0, -1.0):
                moved = d.copy()
                moved[p, c] += sign * STEP
                totals.append(mtp.evaluate(types, i, j, moved)[0])
            diff = (totals[0] - totals[1]) / (2.0 * STEP)
            assert np.abs(np.delete(diff, i[p])).max() == 0.0  # only the centre atom's energy depends on d_p
            assert diff[i[p]] == pytest.approx(de_dd[p, c], abs=1e-7)
    forces, virial, per_atom = forces_and_virial(i, j, d, de_dd, len(atoms))
    np.testing.assert_allclose(virial, per_atom.sum(axis=0), atol=1e-10)
    np.testing.assert_allclose(virial, virial.T, atol=1e-9)  # rotation invariance of the energy


def test_basis_is_consistent_with_evaluate_and_finite_differences():
    """``basis``/``basis_values`` (linear fitting): B @ moment_coeffs = site energies, dB/dd by differences."""
    atoms, mtp = _buckled_sheet()
    types = np.array([mtp.species.index(s) for s in atoms.get_chemical_symbols()])
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    energies, de_dd = mtp.evaluate(types, i, j, d)
    b, db_dd = mtp.basis(types, i, j, d)
    assert b.shape == (len(atoms), mtp.basis_size) and db_dd.shape == (len(d), 3, mtp.basis_size)
    np.testing.assert_allclose(mtp.basis_values(types, i, j, d), b, rtol=0, atol=0)
    np.testing.assert_allclose(mtp.species_coeffs[types] + b @ mtp.moment_coeffs, energies, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(db_dd @ mtp.moment_coeffs, de_dd, rtol=1e-10, atol=1e-9 * np.abs(de_dd).max())
    for p in np.random.default_rng(1).choice(len(d), 4, replace=False):
        for c in range(3):
            moved = [d.copy(), d.copy()]
            moved[0][p, c] += STEP
            moved[1][p, c] -= STEP
            diff = (mtp.basis_values(types, i, j, moved[0]) - mtp.basis_values(types, i, j, moved[1])) / (2 * STEP)
            scale = np.abs(db_dd[p, c]).max()
            np.testing.assert_allclose(diff[i[p]], db_dd[p, c], rtol=0, atol=1e-6 * scale)
