"""Holes of a potential: the 0 K relaxation check and the collapse guard of the MD loop."""
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from md_gpu import heterostructure
from md_gpu.errors import MDRunError, MDSetupError
from md_gpu.forcefields import Morse
from md_gpu.forcefields.pair import _PairPotential
from md_gpu.protocols import RunSettings
from md_gpu.protocols.common import prepare_state, simulation
from md_gpu.protocols.relaxation import describe, relaxation_check
from md_gpu.simulation import COLLAPSE_EV_PER_ATOM, Stage
from training import structures

from test_md_stability import sheet

MORSE = dict(D=0.3429, a=1.3588, r0=2.866)


class HoledMorse(_PairPotential):
    """Morse plus a deep narrow Gaussian well at short range, the way a fitted MTP turns attractive
    where it has no data: depth ``H`` eV, width ``w`` Å, centred at r = 0."""

    def __init__(self, species, *, H, w, cutoff=5.5):
        super().__init__(species, cutoff, {**MORSE, "H": H, "w": w})

    @staticmethod
    def _phi(r, p, xp):
        phi, dphi = Morse._phi(r, p, xp)
        g = p["H"] * xp.exp(-(r / p["w"]) ** 2)
        return phi - g, dphi + 2.0 * r / p["w"] ** 2 * g


SOUND = Morse(("Cu",), **MORSE, cutoff=5.5)
HOLED = HoledMorse(("Cu",), H=2000.0, w=1.0)  # 0.5 eV/A pull at the 2.87 A bond; -2000 eV at r = 0


def test_relaxation_finds_the_lattice_constant_of_the_potential():
    """Independent reference: the triangular Morse sheet's lattice constant by minimising E(a) directly."""
    def energy(a):
        atoms = sheet(a=a)
        from md_gpu.calculator import MDCalculator
        atoms.calc = MDCalculator(SOUND)
        return atoms.get_potential_energy() / len(atoms)

    a_min = minimize_scalar(energy, bounds=(2.6, 3.2), method="bounded", options={"xatol": 1e-6}).x
    r = relaxation_check(SOUND, sheet(a=2.9), fmax=1e-4, steps=2000)
    assert r["converged"] and not r["hole"]
    assert 2.9 * (1 + r["cell_strain"][0]) == pytest.approx(a_min, abs=1e-3)
    assert 2.9 * (1 + r["cell_strain"][1]) == pytest.approx(a_min, abs=1e-3)
    assert r["energy_change_meV_per_atom"] == pytest.approx(1000 * (energy(a_min) - energy(2.9)), abs=0.05)
    assert r["energy_change_meV_per_atom"] < 0 and r["max_displacement_A"] < 1e-3  # affine: no internal relaxation
    assert "converged" in describe(r)


def test_relaxation_stops_at_a_hole_and_says_so():
    r = relaxation_check(HOLED, sheet(a=2.9), steps=500)
    assert r["hole"] and not r["converged"] and r["steps"] < 500
    assert r["lowest_energy_change_meV_per_atom"] < -1000 * COLLAPSE_EV_PER_ATOM
    assert "HOLE" in describe(r)


def test_relaxation_check_bad_input():
    with pytest.raises(MDSetupError, match="steps"):
        relaxation_check(SOUND, sheet(), steps=0)
    atoms = sheet()
    atoms.pbc = [True, False, False]
    with pytest.raises(MDSetupError, match="periodic in x and y"):
        relaxation_check(SOUND, atoms)


def test_md_stops_when_the_system_falls_into_a_hole():
    """Without the guard this run goes on with a collapsed cell (a stripe cell then reported C = 0 N/m)."""
    settings = RunSettings(temperature_K=300.0, seed=0)
    sim = simulation(HOLED, prepare_state(HOLED, sheet(a=2.9), settings), settings, log=lambda line: None)
    with pytest.raises(MDRunError, match="fell .* eV/atom below the run's start.*hole of the potential"):
        sim.run([Stage("nve", 3000)])  # NVE: no thermostat target, the energy guard alone
    sim = simulation(HOLED, prepare_state(HOLED, sheet(a=2.9), settings), settings, log=lambda line: None)
    with pytest.raises(MDRunError, match="hole"):  # thermostatted: one of the two guards, whichever first
        sim.run([Stage("nvt", 3000, thermostat=settings.make_thermostat())])
    run = simulation(SOUND, prepare_state(SOUND, sheet(a=2.9), settings), settings, log=lambda line: None).run(
        [Stage("nvt", 300, thermostat=settings.make_thermostat())])
    assert np.isfinite(run.thermo["potential_eV"]).all()


def test_stripe_heterostructure_refuses_a_hole_before_any_md(monkeypatch):
    import md_gpu.protocols as protocols

    def no_md(*args, **kwargs):
        raise AssertionError("MD ran on a potential with a hole")

    monkeypatch.setattr(protocols, "elastic_constants", no_md)
    holed = HoledMorse(("B", "C"), H=2000.0, w=1.0)
    h = {"stripe_widths_nm": [0.85, 0.85], "repeat_x": 1, "min_length_A": 10.0, "gap_A": 1.55, "match_tolerance": 0.04}  # 2 + 1 cells
    phases = [("graphene", structures.graphene()), ("borophene", structures.borophene())]
    with pytest.raises(MDRunError, match="the stripe cell: 0 K relaxation.*HOLE"):
        heterostructure.run(holed, h, phases, {"delta": 0.005, "sample_steps": 10}, RunSettings(),
                            log=lambda line: None)


def test_md_stops_when_a_thermostatted_run_overheats():
    """The explosion a hole causes can raise the potential energy (atoms fly apart), so the collapse guard
    misses it; the temperature does not: here a cell starting far above 10 x 300 K under a 300 K thermostat."""
    from md_gpu.integrators import Bussi

    hot = RunSettings(temperature_K=4000.0, seed=0)  # Maxwell-Boltzmann at 8000 K: ~4000 K after equipartition
    state = prepare_state(SOUND, sheet(a=2.9), hot)
    slow = Bussi(300.0, tau_fs=1e6)
    with pytest.raises(MDRunError, match="temperature is .* K in stage 'nvt' held at 300 K"):
        simulation(SOUND, state, hot, log=lambda line: None).run([Stage("nvt", 20, thermostat=slow)])
    run = simulation(SOUND, state, hot, log=lambda line: None).run([Stage("nve", 20)])  # no thermostat: no target
    assert run.thermo["temperature_K"].max() > 3000.0
    # a deforming stage is exempt: a small cell that fractures heats up for real (GFN2-xTB graphene: 4.5e3 K)
    pull = Stage("tension", 20, thermostat=slow, deform_axis="x", strain_rate_per_s=1e9)
    run = simulation(SOUND, state, hot, log=lambda line: None).run([pull])
    assert run.thermo["temperature_K"].max() > 3000.0
