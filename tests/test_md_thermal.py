"""Heat transport: the many-body heat current (finite differences), HNEMD force, NEMD energy balance, APIs."""
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from md_gpu.errors import MDSetupError
from md_gpu.forcefields import Morse, compute_forces
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.integrators import make_force_fn, velocity_verlet
from md_gpu.io import read_run_h5
from md_gpu.neighbors import NeighborList
from md_gpu.protocols import (RunSettings, equilibrate, extrapolate_length, heat_current, heat_currents_per_atom,
                              hnemd, interface_nemd, nemd)
from md_gpu.protocols.thermal_current import driving_forces
from md_gpu.protocols.thermal_interface import _interface_fits, find_interfaces
from md_gpu.protocols.thermal_nemd import HeatBaths, Layout, _bath_gradient, _fit_gradient
from md_gpu.state import from_atoms, maxwell_boltzmann
from md_gpu.structures import as_sheet
from training.structures import graphene
from md_gpu.units import FS

DATA = Path(__file__).parent / "data" / "md"
POT = DATA / "graphene_l08.mtp"
A_POT = 2.45716  # Å: the GFN1-xTB graphene lattice constant of the data the test potential was fitted to
QUIET = dict(log=lambda line: None)

pytest.importorskip("training.mtp.model")


def pot_sheet(nx=1):
    """The 60-atom graphene sheet (x ``nx``) at the test potential's lattice constant."""
    return as_sheet(graphene(a=A_POT)).repeat((nx, 1, 1))


@pytest.fixture(scope="module")
def ff():
    return MTPForceField.read(POT, species=("C",))


def flake(n_rings=3, seed=0):
    """An isolated, slightly disordered graphene flake (~30 C atoms) in a box of vacuum (pbc off)."""

    sheet = graphene(a=A_POT, repeat=(n_rings, 2))
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
    md_gpu.protocols.thermal_current). The flake is shifted off the origin so that the r_a terms matter.
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


def quick(**changes):
    base = dict(equilibrate_steps=300, thermo_every=20, seed=4)
    return RunSettings(**{**base, **changes})


def test_per_atom_heat_current_integrates_to_the_energy_the_baths_move(ff):
    """Energy balance of a running NEMD cell, exact up to the time step and the pairs across the tent's kinks.

    With s(x) the distance from the hot bath centre along the cell (a tent: slope +1 from the hot
    to the cold bath centre, -1 back) and S = sum_i s_i e_i,
    dS/dt = sum_i s'(x_i) J_i,x + sum_i s_i dK_i(baths), so
    int (J_segment1 - J_segment2) dt = Delta S - sum_i s_i Delta K_i (baths): the time integral of the
    per-atom heat current equals the energy the baths move, times the distance it travels, plus the
    change of the stored first moment (bounded). Equilibrium fluctuations cancel between the two sides,
    which a plain time average of the current would need nanoseconds to beat down.
    """
    state = equilibrate(ff, pot_sheet(2), quick(), barostat_axes=(), **QUIET).md.state
    L = float(state.cell[0, 0])
    x0 = np.mod(state.positions[:, 0], L)
    w = 6.0
    hot, cold = np.flatnonzero(x0 < w), np.flatnonzero((x0 >= L / 2) & (x0 < L / 2 + w))
    half = L / 2

    def tent(x):
        x = np.mod(x - w / 2, L)
        return np.where(x < half, x, L - x), np.where(x < half, 1.0, -1.0)

    baths = HeatBaths([hot, cold], [450.0, 150.0], 100.0)
    moved, before, after, moments = [], [], [], []

    def current(md):
        _, slope = tent(md.state.positions[:, 0])
        return float((slope * heat_currents_per_atom(md.state, md.result)[:, 0]).sum())

    def kinetic(md):
        return 0.5 * md.state.masses * (md.state.velocities ** 2).sum(1)

    def settled(md):
        """The current and the moment S where a step ends (after the baths)."""
        after.append(current(md))
        moments.append(float((tent(md.state.positions[:, 0])[0] * (kinetic(md) + md.result.energies)).sum()))

    class Recorder:
        """Around the bath step: the current before and after it (the baths change velocities at once,
        so the Verlet part of a step runs from 'after' of one step to 'before' of the next)."""

        def end(self, md, dt_fs):
            before.append(current(md))
            k0 = kinetic(md)
            md = baths.end(md, dt_fs)
            moved.append(float((tent(md.state.positions[:, 0])[0] * (kinetic(md) - k0)).sum()))
            settled(md)
            return md

    init, step = velocity_verlet(make_force_fn(ff, NeighborList(ff.cutoff, 1.0, state.pbc), per_atom=True), 1.0,
                                 thermostat=Recorder())
    md = init(state, seed=5)
    settled(md)
    for _ in range(800):
        md = step(md)
    integral = 0.5 * (np.array(after[:-1]) + np.array(before)).sum()  # trapezoid, eV Å (dt = 1 fs)
    bath = -float(np.sum(moved))  # -sum_i s_i Delta K_i (eV Å): the cold bath takes heat out at s ~ L/2
    assert bath > 0
    assert integral == pytest.approx(moments[-1] - moments[0] + bath, abs=0.02 * bath)


def test_nemd_bookkeeping_profile_and_file(ff, tmp_path):
    """Hot bath energy in = cold bath energy out + change of the total energy (to 2 %); outputs and HDF5."""
    r = nemd(ff, pot_sheet(2), delta_T_K=300.0, bath_width_A=3.7, bin_width_A=1.23,
             production_steps=600, transient_steps=200, settings=quick(), thickness_A=3.35, n_blocks=4,
             out_prefix=tmp_path / "nemd", **QUIET)
    p = r["properties"]
    assert p["energy_balance_rel"] < 0.02
    assert p["heat_flux_W_per_m2"] > 0 and p["n_atoms"] == 120
    assert p["length_A"] == pytest.approx(12.3, abs=0.3)
    t = np.array(r["profile"]["temperature_K"])
    assert t[:3].mean() > t[10:13].mean() + 50  # hot bath bins vs cold bath bins
    h5 = read_run_h5(r["h5"])
    assert h5["results"]["profile"]["temperature_K"] == pytest.approx(list(t), nan_ok=True)
    assert h5["settings"]["method"] == "nemd"


def test_hnemd_runs_and_reports(ff, tmp_path):
    r = hnemd(ff, pot_sheet(), driving_force_per_A=1e-4, production_steps=200,
              settings=quick(equilibrate_steps=100), thickness_A=3.35, n_blocks=4, out_prefix=tmp_path / "h",
              **QUIET)
    assert set(r["properties"]) == {"conductivity_W_per_mK", "conductivity_sem_W_per_mK", "length_A", "n_atoms"}
    assert np.isfinite(r["properties"]["conductivity_W_per_mK"])
    assert len(r["series"]["time_ps"]) == len(r["series"]["running_conductivity_W_per_mK"]) == 200
    assert r["series"]["time_ps"][-1] == pytest.approx(0.2)
    assert read_run_h5(r["h5"])["settings"]["driving_force_per_A"] == 1e-4
    with pytest.raises(MDSetupError, match="thickness_A"):
        hnemd(ff, pot_sheet(), production_steps=20, settings=quick(equilibrate_steps=0), n_blocks=2,
              **QUIET)


def synthetic_layout():
    """100 Å cell, 40 bins of 2.5 Å, baths of 4 bins: hot 0-10 Å, cold 50-60 Å; one atom per bin."""
    return Layout(origin_A=0.0, length_A=100.0, n_bins=40, n_bath=4, bins=np.arange(40))


def test_gradients_and_interface_jumps_of_exact_profiles():
    layout = synthetic_layout()
    x = layout.centres_A
    t = np.where(x < 10, 350.0, np.where(x < 50, 350 - 2 * (x - 5), np.where(x < 60, 250.0, 250 + 2 * (x - 55))))
    assert _fit_gradient(t, layout) == pytest.approx(2.0)
    assert _bath_gradient(t, layout) == pytest.approx(2.0)  # 100 K over the 50 Å between bath centres
    # interfaces at 25 Å (heat flows +x) and 75 Å (heat flows -x): jumps of 10 K, side slopes known
    t = np.select([x < 25, x < 50, x < 75, x < 100],
                  [340 - (x - 10), 315 - 0.5 * (x - 25), 320 + 0.4 * (x - 75), 330 + 0.8 * (x - 75)])
    fits = _interface_fits(t, layout, [25.0, 75.0], skip_A=2.5)
    assert [f[0] for f in fits] == pytest.approx([10.0, 10.0])
    assert [f[1] for f in fits] == [pytest.approx([1.0, 0.5]), pytest.approx([0.4, 0.8])]


def two_mass_sheet(nx=4, ny=24, a=2.9):
    """A triangular Morse sheet, lower half 'Cu' and upper half 'Au' (same bonds, 3x the mass): two
    interfaces normal to y whose only resistance is the mass mismatch."""
    h = a * np.sqrt(3) / 2
    pos = [((i + 0.5 * (j % 2)) * a, j * h, 7.5) for j in range(ny) for i in range(nx)]
    symbols = ["Cu" if j < ny // 2 else "Au" for j in range(ny) for _ in range(nx)]
    return Atoms(symbols, positions=pos, cell=[nx * a, ny * h, 15.0], pbc=[1, 1, 0])


def two_mass_block(n=(2, 12, 2), a=3.61):
    """An fcc Morse crystal (periodic in 3D), lower half 'Al' and upper half 'U': the same bonds, masses
    27 and 238 u, so the two interfaces normal to y resist heat only through the mass mismatch. A 2D
    Morse sheet is no test bed here: a pair potential gives it no bending stiffness, it crumples at
    300 K and the released energy swamps the bath fluxes (the sign of G then depended on the seed)."""
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(n)
    upper = atoms.positions[:, 1] >= n[1] * a / 2 - 0.1
    atoms.set_chemical_symbols(np.where(upper, "U", "Al"))
    return atoms


def test_interface_nemd_finds_both_interfaces_and_a_temperature_jump():
    """The 9x mass mismatch makes the interfaces the main resistance: with 2000 production steps the
    jump (side fits extrapolated to the interface, so noisy) was 70-234 K of the 200 K bath difference
    over seeds 0-6 (NumPy). A 2D Morse sheet is no test bed: its jumps have either sign."""
    ff = Morse(("U", "Al"), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    atoms = two_mass_block()
    positions, after = find_interfaces(from_atoms(atoms, species=ff.species), 1)
    assert sorted(after) == ["Al", "U"]
    assert np.sort(positions) == pytest.approx([-0.9025 + 12 * 3.61 / 2, 12 * 3.61 - 0.9025], abs=1e-9)
    r = interface_nemd(ff, atoms, delta_T_K=200.0, bath_width_A=4.0, bin_width_A=1.8, production_steps=2000,
                       transient_steps=500, settings=quick(dt_fs=2.0), n_blocks=4, **QUIET)
    p = r["properties"]
    assert p["energy_balance_rel"] < 0.02
    assert p["heat_flux_W_per_m2"] > 0
    assert 0.2 * 200.0 < p["temperature_jump_K"] < 1.5 * 200.0 and p["conductance_W_per_m2K"] > 0
    assert set(p["kapitza_length_nm"]) <= {"Al", "U"}
    assert len(r["interfaces_A"]) == 2


def test_interface_nemd_rejects_a_bath_over_an_interface_before_any_md(monkeypatch):
    import md_gpu.protocols.thermal_interface as thermal

    def no_md(*args, **kwargs):
        raise AssertionError("the geometry must be checked before the equilibration")

    monkeypatch.setattr(thermal, "production", no_md)
    ff = Morse(("Au", "Cu"), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    atoms = two_mass_sheet()
    atoms.set_chemical_symbols(["Cu" if j < 6 else "Au" for j in range(24) for _ in range(4)])  # a 15 Å Cu piece
    with pytest.raises(MDSetupError, match=r"a bath of 16.3 Å overlaps an interface \(interfaces at \[59.02, 13.81\] Å"):
        interface_nemd(ff, atoms, bath_width_A=16.0, bin_width_A=1.25, production_steps=100, **QUIET)


def test_interface_nemd_reports_species_mixed_during_equilibration_as_a_failed_run(monkeypatch):
    """A potential that does not keep the heterostructure (atoms cross the interface while it equilibrates)
    is a failed run, reported like a blow-up (MDRunError), not a settings error."""
    import md_gpu.protocols.thermal_interface as thermal
    from md_gpu.errors import MDRunError

    ff = Morse(("Au", "Cu"), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
    atoms = two_mass_sheet()
    mixed = from_atoms(atoms, species=ff.species)
    types = mixed.types.copy()
    types[[0, len(types) - 1]] = types[[len(types) - 1, 0]]  # one Cu and one Au atom swap places
    mixed = mixed.replace(types=types)
    monkeypatch.setattr(thermal, "production", lambda ff, a, settings, log, **_: (mixed, settings))
    with pytest.raises(MDRunError, match=r"changed during equilibration: 4 interfaces along y instead of 2"):
        interface_nemd(ff, atoms, bath_width_A=4.0, bin_width_A=1.25, production_steps=100, n_blocks=4, **QUIET)


@pytest.mark.slow
def test_graphene_hnemd_conductivity_is_positive_and_of_its_size(ff):
    """Graphene at 300 K with the test MTP, HNEMD on the 120-atom cell (24.6 x 12.8 Å), F_e = 3e-3 /Å, 5 ps:
    the conductivity is resolved (above 3 of its standard errors) and within 60-800 W/(m K).

    Measured (seeds 11, 1, 2, 3): 277 +- 51, 155 +- 30, 253 +- 46, 246 +- 50 W/(m K), within linear
    response (F_e = 1e-3 /Å, same runs: 330, 193, 249, 186 with 3x the error; docs/md.md: 337 +- 36 over
    15 ps). A sign error in the driving force, the heat current or the conductivity gives kappa < 0; a unit
    slip (a factor 10: Å vs nm, ps vs fs in the volume or the time) leaves the band. The HNEMD vs
    extrapolated-NEMD comparison is a benchmark (benchmarks/thermal_compare.py): in these nanometre strips
    the NEMD extrapolation's error is as large as its value, so it could not catch such a bug.
    """
    h = hnemd(ff, pot_sheet(2), driving_force_per_A=3e-3, production_steps=5000,
              settings=RunSettings(equilibrate_steps=500, thermo_every=50, seed=11), thickness_A=3.35,
              **QUIET)["properties"]
    kappa, sem = h["conductivity_W_per_mK"], h["conductivity_sem_W_per_mK"]
    assert h["n_atoms"] == 120
    assert 3 * sem < kappa, h
    assert 60 < kappa < 800, h


def test_cli_thermal_hnemd_writes_runs_and_summary(tmp_path, capsys):
    import argparse
    import json

    from md_gpu.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    sheet = tmp_path / "graphene.extxyz"
    write(sheet, graphene())
    args = parser.parse_args(["thermal", "--method", "hnemd", "--potential", str(POT), "--structure", str(sheet),
                              "--steps", "40", "--equilibrate-steps", "20", "--seeds", "0,1", "--out", str(tmp_path)])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "thermal_hnemd_x_summary.json").read_text())
    assert summary["statistics"]["conductivity_W_per_mK"]["n"] == 2 and summary["n_atoms"] == 60
    assert (tmp_path / "hnemd_x_seed1.h5").is_file()
    args = parser.parse_args(["thermal", "--method", "interface", "--potential", str(POT), "--structure", str(sheet),
                              "--steps", "40", "--equilibrate-steps", "0", "--out", str(tmp_path)])
    assert args.func(args) == 1  # one species: no interface, a clear error
    assert "no interface along y" in capsys.readouterr().err


def test_a_run_that_heats_far_above_its_thermostat_is_reported_as_blown_up(ff):
    """A driving force far outside linear response pumps energy in faster than the thermostat takes it out:
    the same signature as a potential falling into a hole, reported as MDRunError, not as a conductivity."""
    from md_gpu.errors import MDRunError

    with pytest.raises(MDRunError, match=r"the run blew up: the temperature is .* K in stage 'hnemd' held at 300 K"):
        hnemd(ff, pot_sheet(), driving_force_per_A=0.5, production_steps=400,
              settings=quick(equilibrate_steps=50), thickness_A=3.35, n_blocks=4, **QUIET)


def test_interfaces_of_a_compound_phase_are_found_by_phase():
    """A graphene / h-BN stripe cell: by species every B and N row would be an 'interface' (18 of them);
    with the phases' species there are exactly the two lateral interfaces, at the stripe edges."""
    from ase.build import graphene as ase_graphene

    from common.sheets import as_sheet as sheet, lateral_interface, rectangular_sheet

    hbn = ase_graphene(formula="BN", a=2.504, vacuum=10.0)
    hbn.pbc = True
    atoms, info = lateral_interface(sheet(rectangular_sheet(graphene())), sheet(rectangular_sheet(hbn)),
                                    cells_y=(2, 2), repeat_x=5, names=("graphene", "hbn"))
    state = from_atoms(atoms, species=["B", "C", "N"])
    by_species = find_interfaces(state, 1)[0]
    positions, after = find_interfaces(state, 1, {"graphene": ["C"], "hbn": ["B", "N"]})
    assert len(by_species) > 2 and len(positions) == 2 and sorted(after) == ["graphene", "hbn"]
    y_hbn = atoms.positions[atoms.arrays["phase"] == 1, 1]
    edges = sorted([y_hbn.min() - info["gap_A"] / 2, y_hbn.max() + info["gap_A"] / 2])
    np.testing.assert_allclose(sorted(positions), edges, atol=1e-6)
    with pytest.raises(MDSetupError, match="species C belongs to phases a and b"):
        find_interfaces(state, 1, {"a": ["C"], "b": ["C", "B", "N"]})
