"""Extension points of the MD loop: observers, an external per-atom force, per-atom virials, the blow-up guard."""
import numpy as np
import pytest
from ase.build import bulk

from md_gpu.errors import MDRunError
from md_gpu.forcefields import Morse
from md_gpu.integrators import Bussi
from md_gpu.simulation import BlowUpGuard, Simulation, Stage
from md_gpu.state import from_atoms, maxwell_boltzmann

FF = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
QUIET = dict(log=lambda line: None)


def start():
    return maxwell_boltzmann(from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)), 300.0, seed=3)


def stages(**observed):
    return [Stage("a", 7, thermostat=Bussi(300.0, 50.0)), Stage("b", 5, thermostat=Bussi(300.0, 50.0), **observed)]


def test_observers_see_every_step_and_change_nothing():
    seen, seen_b = [], []
    plain = Simulation(FF, start(), dt_fs=2.0, seed=1, thermo_every=3, **QUIET).run(stages())
    observed = Simulation(FF, start(), dt_fs=2.0, seed=1, thermo_every=3, observers=[lambda md: seen.append(md.step)],
                          **QUIET).run(stages(observers=(lambda md: seen_b.append(md.step),)))
    assert seen == list(range(1, 13)) and seen_b == list(range(8, 13))
    assert np.array_equal(plain.md.state.positions, observed.md.state.positions)
    assert all(np.array_equal(plain.thermo[c], observed.thermo[c], equal_nan=True) for c in plain.thermo)


def test_external_force_is_added_to_every_force_call_and_per_atom_terms_are_there():
    push = np.zeros((32, 3))
    push[:, 0] = 0.01  # eV/Å on every atom: the centre of mass accelerates along x
    base = Simulation(FF, start(), **QUIET)
    pushed = Simulation(FF, start(), per_atom=True, external_force=lambda state, result: push, **QUIET)
    f0, f1 = base.force_fn(base.state), pushed.force_fn(pushed.state)
    assert np.array_equal(f1.forces, f0.forces + push) and f1.energy == f0.energy
    assert f0.virials is None and f1.virials.shape == (32, 3, 3) and f1.energies.shape == (32,)
    md = pushed.run([Stage("nve", 10)]).md
    momentum = (md.state.masses[:, None] * md.state.velocities).sum(0)
    assert momentum[0] > 0 and abs(momentum[1]) < 1e-9 * momentum[0]


def row(step=10, temperature_K=300.0, energy=-100.0):
    return [step, 0.0, 0, temperature_K, energy]


def test_blowup_guard_criteria():
    guard = BlowUpGuard()
    nvt = Stage("nvt", 10, thermostat=Bussi(300.0, 50.0))
    pull = Stage("pull", 10, thermostat=Bussi(300.0, 50.0), deform_axis="x", strain_rate_per_s=1e9)
    first = row(step=0)
    guard.check([first, row(temperature_K=2999.0)], 10, nvt)  # 10 x max(300, 300 K) not exceeded
    with pytest.raises(MDRunError, match="not finite"):
        guard.check([first, row(energy=np.nan)], 10, nvt)
    with pytest.raises(MDRunError, match="fell 1.1 eV/atom"):
        guard.check([first, row(energy=-111.0)], 10, nvt)
    with pytest.raises(MDRunError, match="the run blew up: the temperature is 3001 K in stage 'nvt' held at 300 K"):
        guard.check([first, row(temperature_K=3001.0)], 10, nvt)
    guard.check([first, row(temperature_K=1e5)], 10, pull)  # deforming stages are exempt
    guard.check([first, row(temperature_K=1e5)], 10, Stage("nve", 10))  # no thermostat, no target
    strict = BlowUpGuard(overheat_factor=2.0, floor_K=1.0, target_K=100.0)
    assert strict.overheat_target_K(Stage("nve", 10)) == 100.0 and strict.overheat_target_K(pull) is None
    with pytest.raises(MDRunError, match="held at 100 K .more than 2 x max.target, 1 K"):
        strict.check([first, row(temperature_K=201.0)], 10, nvt)
