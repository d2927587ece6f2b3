"""Acceptance checks of the MD engine on graphene with a real MTP (issue 6).

Potential: ``tests/data/md/graphene_l08.mtp``, a level-8 MTP fitted with ``training.fit`` to the embedded
GFN1-xTB graphene set (recipe in ``tests/data/md/make_graphene_l08.py``). Structure: the 60-atom
rectangular graphene cell of ``training.structures`` (12.3 x 12.8 Å), open along z (a 2D sheet).

Fast checks: forces and 2D virial against finite differences of the energy, hexagonal symmetry of the
static elastic constants and their C11, C22 against the curvature of the relaxed energy, a 0.5 ps NVE
run. Slow (``-m slow``) checks with the acceptance numbers of
the issue: NVE drift over 10 ps, NVT mean and canonical variance of the kinetic energy over 20 ps,
elastic constants at 1 K from MD against static finite differences (2 %), tensile tests along x and y
over 3 seeds at 300 K.
"""
from pathlib import Path

import numpy as np
import pytest

from md_gpu.analysis import summarize
from md_gpu.forcefields import compute_forces
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.integrators import Bussi, Langevin, make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList
from md_gpu.protocols import RunSettings, elastic_constants, static_elastic_constants, tensile
from md_gpu.state import degrees_of_freedom, from_atoms, kinetic_energy, maxwell_boltzmann
from md_gpu.structures import as_sheet
from training.structures import graphene
from md_gpu.units import KB

POT = Path(__file__).parent / "data" / "md" / "graphene_l08.mtp"
QUIET = dict(log=lambda line: None)
# (strain, 2D stress N/m) at the peak of the 0 K uniaxial-stress curve of POT on the 60-atom sheet, from
# tests/data/md/ideal_strength_l08.py
IDEAL_STRENGTH_0K = {"x": (0.27, 45.15), "y": (0.19, 38.72)}

pytest.importorskip("training.structures")


@pytest.fixture(scope="module")
def ff():
    return MTPForceField.read(POT)


@pytest.fixture(scope="module")
def sheet():
    atoms = as_sheet(graphene(a=2.45716))  # the GFN1-xTB lattice of the data the test potential was fitted to
    assert tuple(atoms.pbc) == (True, True, False) and len(atoms) == 60
    return atoms


@pytest.fixture(scope="module")
def static(ff, sheet):
    return static_elastic_constants(ff, sheet)


def _md(ff, atoms, thermostat, *, temperature_K=300.0, dt_fs=1.0, seed=1):
    """Velocities at 2 T (equipartition halves them), a Verlet list with 1 Å skin, (md, step_fn)."""
    state = maxwell_boltzmann(from_atoms(atoms, species=ff.species), 2 * temperature_K, seed=seed)
    init, step = velocity_verlet(make_force_fn(ff, NeighborList(ff.cutoff, 1.0, state.pbc)), dt_fs,
                                 thermostat=thermostat)
    return init(state, seed=seed), step


def _total_energies(md, step, n_steps, every=10):
    """Times (ps) and total energies (eV) every ``every`` steps of an NVE run."""
    times, energies = [], []
    for k in range(n_steps):
        md = step(md)
        if k % every == 0:
            times.append(md.time_fs * 1e-3)
            energies.append(md.result.energy + kinetic_energy(md.state))
    return md, np.array(times), np.array(energies)


def test_species_come_from_the_potential_tag(ff):
    assert ff.species == ("C",) and ff.cutoff == pytest.approx(5.0)


def test_forces_and_2d_virial_match_finite_differences(ff, sheet):
    atoms = sheet.copy()
    atoms.rattle(0.05, seed=4)
    state = from_atoms(atoms, species=ff.species)
    pos, cell = state.positions, state.cell
    nl = NeighborList(ff.cutoff, 0.5, state.pbc)
    nl.build(pos, cell)
    res = compute_forces(ff, pos, cell, state.types, nl, per_atom=True)

    def energy(p, c):
        return compute_forces(ff, p, c, state.types, nl).energy

    h = 1e-4
    for a, k in [(0, 0), (17, 1), (33, 2), (59, 0)]:
        step = np.zeros_like(pos)
        step[a, k] = h
        fd = -(energy(pos + step, cell) - energy(pos - step, cell)) / (2 * h)
        assert res.forces[a, k] == pytest.approx(fd, rel=1e-6, abs=1e-6)
    h = 1e-5  # strain: the third derivative of the cell energy is large, keep the O(h^2) error small
    for a, b in [(0, 0), (1, 1), (0, 1)]:  # in-plane strains only: z is vacuum
        e = np.zeros((3, 3))
        e[a, b] = h
        fd = -(energy(pos @ (np.eye(3) + e), cell @ (np.eye(3) + e))
               - energy(pos @ (np.eye(3) - e), cell @ (np.eye(3) - e))) / (2 * h)
        assert res.virial[a, b] == pytest.approx(fd, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(res.forces.sum(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(res.virials.sum(0), res.virial, atol=1e-9)


def test_static_elastic_constants_have_hexagonal_symmetry(static):
    """Graphene is isotropic in the plane: C11 = C22 and C66 = (C11 - C12) / 2; stable (C11 > |C12| > 0)."""
    assert static["unit"] == "N/m"
    assert static["C22"] == pytest.approx(static["C11"], rel=0.01)
    assert static["C66"] == pytest.approx((static["C11"] - static["C12"]) / 2, rel=0.02)
    assert static["C11"] > static["C12"] > 0


def test_static_elastic_constants_equal_the_curvature_of_the_relaxed_energy(ff, sheet, static):
    """C11 and C22 from the stress (static_elastic_constants) against the second difference of the energy,
    positions relaxed at each strain: C_ii = (E(+d) + E(-d) - 2 E(0)) / (d^2 A), eV/Å^2 to N/m with ASE's J
    and m. No stress, virial, cell height or GPa in between, so a wrong sign, factor or unit there fails.

    Tolerance: the two central differences differ at O(d^2) (energy C_iiii d^2 / 12, stress C_iiii d^2 / 6);
    measured at d = 0.005: 403.26 from the energy against 403.76 N/m from the stress (-0.12 %), both going
    to 402.8 N/m as d -> 0 (energy at d = 0.0025: 402.89). 0.3 % is 2.5 times that."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    from ase.units import J, m

    from md_gpu.calculator import MDCalculator

    relaxed = sheet.copy()
    relaxed.calc = MDCalculator(ff)
    BFGS(FrechetCellFilter(relaxed, mask=[True, True, False, False, False, True]), logfile=None).run(fmax=1e-5,
                                                                                                  steps=500)
    area = np.linalg.norm(np.cross(relaxed.cell[0], relaxed.cell[1]))
    d = static["delta"]

    def energy(strain):
        strained = relaxed.copy()
        strained.set_cell(relaxed.cell.array @ np.diag([1.0 + s for s in strain] + [1.0]), scale_atoms=True)
        strained.calc = MDCalculator(ff)
        BFGS(strained, logfile=None).run(fmax=1e-5, steps=500)
        return strained.get_potential_energy()

    e0 = energy((0.0, 0.0))
    for key, axis in (("C11", (1.0, 0.0)), ("C22", (0.0, 1.0))):
        second = energy([d * a for a in axis]) + energy([-d * a for a in axis]) - 2 * e0
        assert second / (d ** 2 * area) * (m ** 2 / J) == pytest.approx(static[key], rel=3e-3), key


def test_nve_short_run_conserves_energy(ff, sheet):
    """Fast variant of the 10 ps check: 0.5 ps, fluctuation and drift bounds 10x looser."""
    md, step = _md(ff, sheet, None)
    md, t, e = _total_energies(md, step, 500)
    n = md.state.n_atoms
    assert np.ptp(e) / n < 5e-4
    assert abs(np.polyfit(t, e, 1)[0]) / n < 1e-4


@pytest.mark.slow
def test_nve_drift_over_10ps(ff, sheet):
    """Acceptance: 300 K, 1 fs, float64: |drift| < 1e-5 eV/atom/ps over 10 ps."""
    md, step = _md(ff, sheet, None)
    md, t, e = _total_energies(md, step, 10000)
    slope = np.polyfit(t, e, 1)[0] / md.state.n_atoms
    assert abs(slope) < 1e-5, f"drift {slope:.3g} eV/atom/ps"
    assert np.ptp(e) / md.state.n_atoms < 5e-4


@pytest.mark.slow
@pytest.mark.parametrize("thermostat", [Bussi(300.0, tau_fs=20.0), Langevin(300.0, damping_fs=20.0)],
                         ids=["bussi", "langevin"])
def test_nvt_mean_temperature_and_canonical_variance_over_20ps(ff, sheet, thermostat):
    """Acceptance: mean T within 1 % of 300 K over 20 ps; KE variance within 10 % of ndf (kT)^2 / 2.

    The kinetic energy on ndf = 3n - 3 degrees of freedom is Gamma(ndf/2, kT) distributed in the
    canonical ensemble, whatever the potential. 120 atoms: in the 60-atom cell the standard error
    of the 20 ps mean temperature is 0.5 % (1 ps block averages, seeds 6 and 7: 299.1 +- 1.5 K and
    299.8 +- 1.7 K; seed 5 gave 296.9 K), so 1 % would be a 2-sigma test there; doubling the
    atoms halves the variance of the kinetic energy.
    """
    md, step = _md(ff, sheet.repeat((2, 1, 1)), thermostat, seed=5)
    for _ in range(1000):
        md = step(md)
    ke = np.empty(20000)
    for k in range(ke.size):
        md = step(md)
        ke[k] = kinetic_energy(md.state)
    ndf = degrees_of_freedom(md.state)
    kt = KB * 300.0
    blocks = 2 * ke.reshape(20, -1).mean(1) / (ndf * KB)
    message = f"mean T {blocks.mean():.2f} K +- {blocks.std(ddof=1) / np.sqrt(blocks.size):.2f} (1 ps blocks)"
    assert 2 * ke.mean() / (ndf * KB) == pytest.approx(300.0, rel=0.01), message
    assert ke.var() == pytest.approx(0.5 * ndf * kt * kt, rel=0.10), f"variance ratio {ke.var() / (0.5 * ndf * kt * kt):.3f}"


@pytest.mark.slow
def test_elastic_constants_at_1K_match_static_finite_differences(ff, sheet, static):
    """Acceptance: C11, C22, C12, C66 from the MD protocol at 1 K within 2 % of the 0 K static values."""
    settings = RunSettings(temperature_K=1.0, dt_fs=1.0, equilibrate_steps=800, thermo_every=5,
                           barostat_tau_fs=200, barostat_stochastic=False, seed=3)
    md = elastic_constants(ff, sheet, settings=settings, sample_steps=200, **QUIET)
    assert md["unit"] == "N/m"
    for key in ("C11", "C22", "C12", "C66"):
        assert md[key] == pytest.approx(static[key], rel=0.02), key


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["x", "y"])
def test_tensile_at_300K_over_three_seeds(ff, sheet, static, direction, tmp_path):
    """Tensile tests to failure at 300 K, 5e10 1/s, 3 seeds: curve, modulus, strength, failure strain, spreads.

    Checks: in every run the stress drops below half its peak before 35 % strain (a sustained drop,
    recorded in ``settings["events"]``; with this potential the 60-atom sheet reconstructs a few bonds
    and keeps its bond network whole, which the protocol reports as yield, not fracture); strength and
    failure strain near the 0 K ideal strength of the same potential (IDEAL_STRENGTH_0K); the
    Young's modulus (0-1 % fit) agrees with the plane-stress value (C11^2 - C12^2) / C11 of the static
    constants within 10 %; the seeds scatter (different trajectories) but little (sem < 5 % of the
    mean); the HDF5 file of each run records the strain rate and the size. Poisson's ratio is not
    checked here: in a 60-atom cell at 300 K the transverse cell length fluctuates by ~0.3 % (the
    barostat samples NPT), as much as the signal nu x 1 %; it needs a larger cell (docs/md.md).
    """
    from md_gpu.io import read_run_h5

    settings = dict(temperature_K=300.0, dt_fs=1.0, equilibrate_steps=2000, thermo_every=10,
                    thermostat_tau_fs=100.0, barostat_tau_fs=50.0)
    runs = []
    for seed in range(3):
        r = tensile(ff, sheet, direction=direction, strain_rate_per_s=5e10, max_strain=0.35,
                    settings=RunSettings(seed=seed, **settings), thickness_A=3.35, fit_window=(0.0, 0.01),
                    out_prefix=tmp_path / f"graphene_{direction}_seed{seed}", **QUIET)
        p = r["properties"]
        assert r["settings"]["events"], f"seed {seed}: no sustained stress drop up to 35 % strain"
        assert p["failed"] == (p["failure_mode"] == "fracture")
        assert p["ultimate_strength_N_per_m"] == pytest.approx(r["curve"]["stress_N_per_m"].max())
        stored = read_run_h5(r["h5"])
        assert stored["settings"]["strain_rate_per_s"] == 5e10 and stored["settings"]["n_atoms"] == 60
        runs.append(p)
    stats = summarize(runs)
    e2d = (static["C11"] ** 2 - static["C12"] ** 2) / static["C11"]
    assert stats["youngs_modulus_N_per_m"]["mean"] == pytest.approx(e2d, rel=0.10)
    for key in ("youngs_modulus_N_per_m", "ultimate_strength_N_per_m", "failure_strain"):
        assert 0 < stats[key]["sem"] < 0.05 * stats[key]["mean"], key
    # Strength and failure strain against the 0 K ideal strength of the same potential and sheet
    # (tests/data/md/ideal_strength_l08.py: uniaxial stress in 1 % steps, relaxed): x 45.15 N/m at 0.27,
    # y 38.72 N/m at 0.19 (where a bond reconstructs at 0 K). Measured, 3 seeds at 300 K: x 41.41 N/m
    # (-8.3 %) at 0.219 (-19 %; bonds break early in the thermal fluctuations), y 39.23 N/m (+1.3 %) at 0.199
    # (+4.7 %; the 0 K path reconstructs at the first 1 % step past the peak, the 5e10 1/s pull a little
    # later). Bounds: 12 % on the strength, 25 % on the failure strain, 1.5 and 1.3 times the largest gap.
    ideal_strain, ideal_strength = IDEAL_STRENGTH_0K[direction]
    assert stats["ultimate_strength_N_per_m"]["mean"] == pytest.approx(ideal_strength, rel=0.12)
    assert stats["failure_strain"]["mean"] == pytest.approx(ideal_strain, rel=0.25)
    assert stats["youngs_modulus_GPa"]["mean"] == pytest.approx(stats["youngs_modulus_N_per_m"]["mean"] / 0.335)
