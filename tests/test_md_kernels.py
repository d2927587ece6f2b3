"""NumPy vs CuPy: every device path gives the NumPy numbers (float64, 1e-10). Skipped without a usable GPU."""
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from md_gpu.backend import cupy_usable, to_numpy

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")
if not cupy_usable()[0]:
    pytest.skip(f"no usable GPU: {cupy_usable()[1]}", allow_module_level=True)

from md_gpu.forcefields import Morse, compute_forces, forces_and_virial  # noqa: E402
from md_gpu.forcefields.mtp import MTPForceField  # noqa: E402
from md_gpu.integrators import Langevin, make_force_fn, velocity_verlet  # noqa: E402
from md_gpu.neighbors import NeighborList, build_pairs  # noqa: E402
from md_gpu.state import from_atoms, kinetic_energy, maxwell_boltzmann  # noqa: E402

POT = Path(__file__).parent / "data" / "md" / "cu_pot_10.mtp"


def _config(rep=3):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(rep)
    atoms.rattle(0.1, seed=0)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.04, 0], [0, 1, 0], [0.02, 0, 1]]), scale_atoms=True)
    return atoms


def _pairs(i, j, s):
    return sorted(zip(to_numpy(i).tolist(), to_numpy(j).tolist(), map(tuple, np.rint(to_numpy(s)).astype(int))))


def test_neighbor_list_same_pairs():
    atoms = _config()
    cpu = build_pairs(atoms.positions, atoms.cell.array, (True,) * 3, 6.0)
    gpu = build_pairs(cupy.asarray(atoms.positions), cupy.asarray(atoms.cell.array), (True,) * 3, 6.0)
    assert _pairs(*cpu) == _pairs(*gpu)


def test_padded_build_same_on_both_backends_without_a_read():
    import cupyx

    from md_gpu.backend import SYNCS
    from md_gpu.neighbors import padded_build_pairs

    atoms = _config()
    args = (atoms.cell.array, (True,) * 3, 6.0, (60, 40000))
    cpu = padded_build_pairs(atoms.positions, *args)
    positions = cupy.asarray(atoms.positions)
    before = SYNCS.count
    with cupyx.allow_synchronize(False):  # an implicit read (int(), bool(), nonzero, bincount) raises here
        gpu = padded_build_pairs(positions, *args)
    assert SYNCS.count == before
    for a, b in zip(cpu, gpu):
        assert np.array_equal(to_numpy(b), a)


def test_a_deferred_nvt_run_with_padded_rebuilds_matches_numpy():
    """Deferred checks every 10 steps with the padded builder on the device: the NumPy run's trajectory
    (Langevin without noise: no random numbers, which differ between backends)."""
    from md_gpu.simulation import Simulation, Stage

    ff = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    finals = []
    for xp in (np, cupy):
        s = maxwell_boltzmann(from_atoms(_config(2), xp=xp), 900.0, seed=3)
        sim = Simulation(ff, s, dt_fs=2.0, skin_A=0.3, thermo_every=20, seed=3, neighbor_check_every=10,
                         log=lambda line: None)
        sim.nlist.padded = True
        run = sim.run([Stage("nvt", 100, thermostat=Langevin(0.0, 100.0))])
        assert sim.nlist.n_builds >= 3
        finals.append(to_numpy(run.md.state.positions))
    np.testing.assert_allclose(finals[1], finals[0], atol=1e-9, rtol=0)


def test_scatter_kernel_matches_numpy():
    rng = np.random.default_rng(1)
    n, p = 50, 2000
    i, j = rng.integers(0, n, p), rng.integers(0, n, p)
    d, g = rng.normal(size=(p, 3)), rng.normal(size=(p, 3))
    ref = forces_and_virial(i, j, d, g, n, np)
    dev = forces_and_virial(cupy.asarray(i), cupy.asarray(j), cupy.asarray(d), cupy.asarray(g), n, cupy)
    for a, b in zip(ref, dev):
        np.testing.assert_allclose(to_numpy(b), a, atol=1e-10, rtol=0)


@pytest.mark.parametrize("make_ff", [lambda: Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5),
                                     lambda: MTPForceField.read(POT, species=("Cu",))])
def test_forces_same_on_both_backends(make_ff):
    ff = make_ff()
    atoms = _config()
    out = []
    for xp in (np, cupy):
        s = from_atoms(atoms, species=ff.species, xp=xp)
        nl = NeighborList(ff.cutoff, 1.0, s.pbc)
        nl.build(s.positions, s.cell)
        out.append(compute_forces(ff, s.positions, s.cell, s.types, nl, per_atom=True))
    assert out[1].energy == pytest.approx(out[0].energy, abs=1e-10)
    for name in ("forces", "virial", "virials", "energies"):
        np.testing.assert_allclose(to_numpy(getattr(out[1], name)), getattr(out[0], name), atol=1e-10, rtol=0)


def test_nve_steps_same_on_both_backends():
    ff = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    finals = []
    for xp in (np, cupy):
        s = maxwell_boltzmann(from_atoms(_config(2), xp=xp), 300.0, seed=3)
        init, step = velocity_verlet(make_force_fn(ff, NeighborList(ff.cutoff, 1.0, s.pbc)), 1.0)
        md = init(s)
        for _ in range(20):
            md = step(md)
        finals.append(to_numpy(md.state.positions))
    np.testing.assert_allclose(finals[1], finals[0], atol=1e-10, rtol=0)


def _langevin_run(xp, temperature_K):
    """20 Langevin steps (1 fs, damping 50 fs) of the rattled, sheared 32-atom Cu cell from 300 K velocities:
    (initial total energy eV, final MDState)."""
    ff = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    s = maxwell_boltzmann(from_atoms(_config(2), xp=xp), 300.0, seed=3)
    init, step = velocity_verlet(make_force_fn(ff, NeighborList(ff.cutoff, 1.0, s.pbc)), 1.0,
                                 thermostat=Langevin(temperature_K, 50.0))
    md = init(s, seed=1)
    e0 = float(md.result.energy) + float(kinetic_energy(md.state))
    for _ in range(20):
        md = step(md)
    return e0, md


def test_langevin_on_device_keeps_the_energy_account_and_its_friction_matches_numpy():
    """At 0 K the Langevin step is friction alone (the noise is scaled by 0): deterministic, so the device
    trajectory equals NumPy's to 1e-10 as NVE does. At 300 K the random streams differ, so the check is the
    energy account: total energy + the heat the thermostat took out is conserved up to the Verlet error.
    Measured on NumPy: 0.96 eV of heat, |E + heat - E0| = 2.8e-3 eV, the same as the NVE error of this
    rattled cell over 20 steps (2.9e-3 eV); 1e-2 eV is three times that and 1 % of the heat exchanged."""
    finals = [_langevin_run(xp, 0.0)[1] for xp in (np, cupy)]
    for name in ("positions", "velocities"):
        np.testing.assert_allclose(to_numpy(getattr(finals[1].state, name)), getattr(finals[0].state, name),
                                   atol=1e-10, rtol=0)
    e0, md = _langevin_run(cupy, 300.0)
    heat = float(md.heat)
    assert abs(heat) > 0.1  # 20 steps at damping 50 fs move about 1 eV
    assert float(md.result.energy) + float(kinetic_energy(md.state)) + heat == pytest.approx(e0, abs=1e-2)
