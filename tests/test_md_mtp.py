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
